import { encodeFrames } from '../sdk/codec.ts'
import { type Assignment, type FunctionDef, MAX_FRAME_BYTES, type ObjectUpdate, type ServerMessage } from '../sdk/protocol/index.ts'
import { BATCH_MESSAGE_BYTES, sizeOfValues, TurnBatch } from '../sdk/turn-batch.ts'
import type { Inbound } from './edge.ts'
import type { ObjectSink } from './gcs/object-directory.ts'
import { RateLimit, SUBMITS_PER_SECOND } from './rate-limit.ts'

/**
 * One control channel: a driver (a job's root connection), a node, or a node's worker (`self.shoal` inside a task,
 * carried on its node's socket as a relay channel). Outgoing messages are coalesced per turn of the event loop:
 * object updates into one `objects` message and task assignments into one `assign`, which is what makes thousands
 * of tasks per second cheap.
 */
export class Session implements ObjectSink {
  private static nextId = 1
  readonly id = Session.nextId++
  role: 'driver' | 'node' | undefined
  /** Whose work this connection may see and touch (from its token; a worker's channel: its job's tenant). */
  tenant = ''
  /** An admin token: every tenant's work. */
  admin = false
  /** A node's trust: `volunteer` nodes joined without a token and run only work that opted in. */
  trust: 'trusted' | 'volunteer' | undefined
  jobId: string | undefined
  /** The connection that started the job: when it closes, the job ends. */
  isJobRoot = false
  namespace = ''
  nodeId: string | undefined
  /** Objects this connection borrows (refs it found inside values), with how many times: unpinned when it closes. */
  readonly borrowed = new Map<string, number>()
  /** A browser driver's id in the peer mesh, once it serves objects itself. */
  peerId: string | undefined
  /** Functions this node already has (by job and id); the rest ship with the first assignment that needs them. */
  readonly knownFunctions = new Set<string>()
  /** For a node: its workers' channels, by name. For a worker's channel: the node carrying it and its name. */
  readonly relays = new Map<string, Session>()
  /** Channels of this node already ended (their worker's late frames are dropped). */
  readonly endedRelays = new Set<string>()
  carrier: { node: Session; channel: string } | undefined
  /** For a worker's channel: the actor that worker hosts, if it hosts one. */
  actorId: string | undefined
  /** A socket's messages waiting their turn (see edge.ts); its workers' channels use their node's. */
  inbound: Inbound | undefined
  /** Task submissions through the coordinator this connection may still make (see SUBMITS_PER_SECOND). */
  readonly submitRate = new RateLimit(SUBMITS_PER_SECOND)
  /** Binary frames received so far: a refused frame is named by this count, which the sender keeps too. */
  framesReceived = 0
  /** Resource shapes this job was already warned about as infeasible (Ray warns once). */
  readonly warnedShapes = new Set<string>()
  closed = false

  private readonly out = new TurnBatch<ServerMessage>((msgs) => this.write(msgs))
  private objects: ObjectUpdate[] = []
  private objectBytes = 0
  private assignments: Assignment[] = []
  private assignmentBytes = 0
  private functions: FunctionDef[] = []

  constructor(
    private readonly sendBytes: (bytes: Uint8Array) => void,
    private readonly closeSocket: (code: number, reason: string) => void,
  ) {}

  send(msg: ServerMessage): void {
    if (!this.closed) this.out.push(msg)
  }

  pushObject(update: ObjectUpdate): void {
    if (this.closed) return
    const size = sizeOfValues([update.data])
    // A message of this turn's updates, or a new one once it holds BATCH_MESSAGE_BYTES (no frame grows past a limit).
    if (!this.objects.length || this.objectBytes + size > BATCH_MESSAGE_BYTES) {
      this.objects = []
      this.objectBytes = 0
      this.out.push({ type: 'objects', objects: this.objects })
    }
    this.objects.push(update)
    this.objectBytes += size
  }

  pushAssignment(a: Assignment, fn: FunctionDef | undefined): void {
    if (this.closed) return
    const size = sizeOfValues(a.args) + (fn?.source.length ?? 0)
    if (!this.assignments.length || this.assignmentBytes + size > BATCH_MESSAGE_BYTES) {
      this.assignments = []
      this.functions = []
      this.assignmentBytes = 0
      this.out.push({ type: 'assign', tasks: this.assignments, functions: this.functions })
    }
    const known = `${a.jobId}:${a.functionId}`
    if (fn && !this.knownFunctions.has(known)) {
      this.knownFunctions.add(known)
      this.functions.push(fn)
    }
    this.assignments.push(a)
    this.assignmentBytes += size
  }

  close(code: number, reason: string): void {
    this.flush()
    this.closeSocket(code, reason)
  }

  /** Sends what this turn queued now. */
  flush(): void {
    this.out.flush()
  }

  private write(msgs: ServerMessage[]): void {
    // The batched objects and assignments were queued once, by reference, and filled since: start new ones.
    this.objects = []
    this.assignments = []
    this.functions = []
    if (this.closed) return
    encodeFrames(
      msgs,
      (frame) => this.sendBytes(frame),
      MAX_FRAME_BYTES,
      (m) => console.error(`[coordinator] a '${(m as ServerMessage).type}' message over ${MAX_FRAME_BYTES} bytes was not sent`),
    )
  }
}
