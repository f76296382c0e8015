/**
 * Shoal's SDK: Ray Core's API for a mesh of browser tabs. This list is the public surface: extend it, never break it
 * (no `export *`: what is not listed here is internal).
 * @example
 * import { connect } from 'shoal'
 * const mesh = await connect()
 * const double = mesh.remote(function double(x: number) { return x * 2 })
 * await mesh.get(double.remote(21)) // 42
 */

export type { ActorHandle, ActorMethods } from './actor-handle.ts'
export { ActorClass, ActorHandleBase } from './actor-handle.ts'
export { connect } from './connect.ts'
export type { VerificationGroup } from './errors.ts'
export {
  ActorDiedError,
  ActorUnschedulableError,
  ConnectionError,
  GetTimeoutError,
  NodeDiedError,
  ObjectFreedError,
  ObjectLostError,
  ObjectStoreFullError,
  OwnerDiedError,
  ShoalError,
  TaskCancelledError,
  TaskError,
  TaskUnschedulableError,
  ValidationError,
  VerificationError,
  WorkerCrashedError,
} from './errors.ts'
export { Mesh } from './mesh.ts'
export { ObjectRef } from './object-ref.ts'
export type { ActorOptions, ConnectOptions, TaskOptions } from './options.ts'
export type { ActorState, SchedulingStrategy, TaskState, TaskType } from './protocol/index.ts'
export { RemoteFunction } from './remote-function.ts'
export { parseSize } from './size.ts'
export type { ActorRow, JobRow, ListOptions, NodeRow, ObjectRow, TaskRow, TaskSummary } from './state-api.ts'
export { StateApi } from './state-api.ts'
