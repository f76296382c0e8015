/// <reference lib="webworker" />
import * as Comlink from 'comlink'

/** The bare minimum a task or actor call does: run a function and return its result. */
let counter = 0
Comlink.expose({
  noop: (x: number) => x,
  inc: () => ++counter,
  async sleepy(ms: number) {
    await new Promise((r) => setTimeout(r, ms))
    return ms
  },
})
