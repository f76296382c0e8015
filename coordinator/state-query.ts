import { ValidationError } from '../sdk/errors.ts'
import type { StateFilter } from '../sdk/protocol/index.ts'
import { STATE_COLUMNS } from '../sdk/state-api.ts'
import { ACTOR_STATES, TASK_STATES } from '../sdk/state-vocabulary.ts'

type Listable = keyof typeof STATE_COLUMNS

/** The states a row's `state` may hold, per kind of row. */
const STATES: Record<Listable, readonly string[] | undefined> = {
  tasks: TASK_STATES,
  actors: ACTOR_STATES,
  nodes: ['ALIVE', 'DEAD'],
  jobs: ['RUNNING', 'FINISHED', 'FAILED'],
  objects: undefined,
}

const normalize = (key: string) => key.replace(/_/g, '').toLowerCase()

/**
 * Filters and limits rows of the state API as Ray's: `[key, '=' | '!=', value]` triples, where the key may be
 * written in Ray's snake_case or any letter case (`func_or_class_name`, `STATE`), and a state value in any case.
 * An unknown key or state is a ValidationError that lists the valid ones — never a silently empty answer.
 */
export function filterRows<T extends object>(resource: Listable, rows: Iterable<T>, filters: StateFilter[] = [], limit = 10_000): T[] {
  const columns: readonly string[] = STATE_COLUMNS[resource]
  const predicates = filters.map(([key, op, value]) => {
    const column = columns.find((c) => normalize(c) === normalize(key))
    if (!column) throw new ValidationError(`list ${resource}: unknown filter key '${key}'; valid keys: ${columns.join(', ')}`)
    let want = String(value)
    const states = STATES[resource]
    if (column === 'state' && states) {
      const state = states.find((st) => st === want.toUpperCase())
      if (!state) throw new ValidationError(`list ${resource}: unknown state '${want}'; valid states: ${states.join(', ')}`)
      want = state
    }
    return (row: T) => (String((row as Record<string, unknown>)[column]) === want) === (op === '=')
  })
  const out: T[] = []
  for (const r of rows) {
    if (!predicates.every((p) => p(r))) continue
    out.push(r)
    if (out.length >= limit) break
  }
  return out
}
