import { encodeFrames } from '../sdk/codec.ts'
import type { Assignment, FunctionDef, ObjectUpdate, ServerMessage } from '../sdk/protocol.ts'
import type { ObjectSink } from './gcs/object-directory.ts'

/**
 * One control WebSocket: a driver (a job's root connection, or a connection opened inside a task) or a node.
 * Outgoing messages are coalesced per turn of the event loop: object updates into one `objects` frame and task
 * assignments into one `assign` frame, which is what makes thousands of tasks per second cheap.
 */
export class Session implements ObjectSink {
  private static nextId = 1
  readonly id = Session.nextId++
  role: 'driver' | 'node' | undefined
  jobId: string | undefined
  /** The connection that started the job: when it closes, the job ends. */
  isJobRoot = false
  namespace = 'default'
  nodeId: string | undefined
  /** Objects this connection borrows (refs it found inside values), with how many times: unpinned when it closes. */
  readonly borrowed = new Map<string, number>()
  /** A browser driver's id in the peer mesh, once it serves objects itself. */
  peerId: string | undefined
  /** Functions this node already has; the rest ship with the first assignment that needs them. */
  readonly knownFunctions = new Set<string>()
  closed = false

  private out: ServerMessage[] = []
  private objects: ObjectUpdate[] = []
  private assignments: Assignment[] = []
  private functions: FunctionDef[] = []
  private scheduled = false

  constructor(
    private readonly sendBytes: (bytes: Uint8Array) => void,
    private readonly closeSocket: (code: number, reason: string) => void,
  ) {}

  send(msg: ServerMessage): void {
    this.out.push(msg)
    this.schedule()
  }

  pushObject(update: ObjectUpdate): void {
    this.objects.push(update)
    this.schedule()
  }

  pushAssignment(a: Assignment, fn: FunctionDef | undefined): void {
    if (fn && !this.knownFunctions.has(fn.functionId)) {
      this.knownFunctions.add(fn.functionId)
      this.functions.push(fn)
    }
    this.assignments.push(a)
    this.schedule()
  }

  close(code: number, reason: string): void {
    this.flush()
    this.closeSocket(code, reason)
  }

  private schedule(): void {
    if (this.scheduled) return
    this.scheduled = true
    queueMicrotask(() => this.flush())
  }

  flush(): void {
    this.scheduled = false
    if (this.closed) {
      this.out = []
      this.objects = []
      this.assignments = []
      return
    }
    const out: ServerMessage[] = this.out
    this.out = []
    if (this.objects.length) {
      out.push({ type: 'objects', objects: this.objects })
      this.objects = []
    }
    if (this.assignments.length) {
      out.push({ type: 'assign', tasks: this.assignments, functions: this.functions })
      this.assignments = []
      this.functions = []
    }
    encodeFrames(out, this.sendBytes)
  }
}
