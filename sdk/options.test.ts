import { describe, expect, it } from 'vitest'
import { ValidationError } from './errors.ts'
import { ActorOptionsSchema, parseOptions, TaskOptionsSchema } from './options.ts'
import { parseSize } from './size.ts'

describe('option validation', () => {
  it('accepts Ray-style options', () => {
    const o = parseOptions(
      TaskOptionsSchema,
      { name: 'x', numCpus: 0.5, resources: { gpuish: 1 }, maxRetries: -1, schedulingStrategy: 'SPREAD' },
      'f.options',
    )
    expect(o.numCpus).toBe(0.5)
    expect(parseOptions(TaskOptionsSchema, { schedulingStrategy: { nodeId: 'a'.repeat(56) } }, 'f').schedulingStrategy).toEqual({
      nodeId: 'a'.repeat(56),
      soft: false,
    })
  })

  it('names an unknown option and suggests the right spelling', () => {
    expect(() => parseOptions(TaskOptionsSchema, { num_cpus: 2 }, 'f.options')).toThrow(
      /unknown option 'num_cpus' \(did you mean 'numCpus'\?\)/,
    )
    expect(() => parseOptions(ActorOptionsSchema, { max_concurrency: 2 }, 'A.options')).toThrow(/did you mean 'maxConcurrency'/)
  })

  it('names an option of the wrong type or range', () => {
    const err = (() => {
      try {
        parseOptions(TaskOptionsSchema, { numCpus: '2' }, 'f.options')
      } catch (e) {
        return e
      }
    })()
    expect(err).toBeInstanceOf(ValidationError)
    expect((err as Error).message).toMatch(/f\.options: invalid option 'numCpus'/)
    expect(() => parseOptions(TaskOptionsSchema, { maxRetries: -2 }, 'f')).toThrow(/'maxRetries'/)
    expect(() => parseOptions(TaskOptionsSchema, { schedulingStrategy: 'PACK' }, 'f')).toThrow(/'schedulingStrategy'/)
    expect(() => parseOptions(TaskOptionsSchema, { schedulingStrategy: { nodeId: 'short' } }, 'f')).toThrow(/56 hex/)
  })

  it('parses sizes with units', () => {
    expect(parseSize('96MiB')).toBe(96 * 2 ** 20)
    expect(parseSize('1GiB')).toBe(2 ** 30)
    expect(parseSize('500MB')).toBe(500e6)
    expect(parseSize(1024)).toBe(1024)
    expect(() => parseSize('lots')).toThrow(/size like 96MiB/)
  })
})
