import { ValidationError } from '../sdk/errors.ts'
import { jobIdOfObject } from '../sdk/ids.ts'
import type { Session } from './session.ts'

/** Who reads the state API: an admin, or a driver of one tenant. */
export interface Viewer {
  admin: boolean
  tenant: string
}

/**
 * The one rule of tenancy, and what follows from it: a driver sees and touches its own tenant's work (refs work across
 * a tenant's jobs, as in Ray); an admin, anyone's; a node, every object (it stores and serves what is placed on it).
 */
export class Tenancy {
  /** @param tenantOf the tenant of a job, undefined for a job this coordinator does not know. */
  constructor(private readonly tenantOf: (jobId: string) => string | undefined) {}

  /** Whether `viewer` (a driver's connection, or a reader of the state API) may see and touch the work of `jobId`. */
  sees(viewer: Viewer, jobId: string | undefined): boolean {
    if (jobId === undefined) return false
    return viewer.admin || this.tenantOf(jobId) === viewer.tenant
  }

  /** Whether `s` may see and touch an object (by its id's job). */
  mayTouch(s: Session, objectId: string): boolean {
    return s.role === 'node' || this.sees(s, jobIdOfObject(objectId))
  }

  /** The filter of rows by job `viewer` may see; undefined when it sees them all. */
  keepFor(viewer: Viewer): ((jobId: string) => boolean) | undefined {
    return viewer.admin ? undefined : (jobId) => this.sees(viewer, jobId)
  }

  /** Refs a value holds must be ones this connection may see: another tenant's are unknown here. */
  checkRefs(s: Session, ids: readonly string[] | undefined): void {
    for (const id of ids ?? [])
      if (!this.mayTouch(s, id)) throw new ValidationError(`the value holds ObjectRef(${id}), which this coordinator does not know`)
  }

  /**
   * The jobs a task of `jobId` may take objects of, among `objectJobIds` (a node asks, for a pushed task's arguments):
   * those a driver of its tenant would see.
   */
  sameTenant(jobId: string, objectJobIds: readonly string[]): string[] {
    const tenant = this.tenantOf(jobId)
    const viewer = tenant === undefined ? undefined : { admin: false, tenant }
    return viewer ? objectJobIds.filter((j) => this.sees(viewer, j)) : []
  }
}
