import { WebSocketServer } from 'ws'
import { decodeFrame, encodeFrame } from '../sdk/codec.ts'
import { connect } from '../sdk/index.ts'
import type { BenchCluster } from './cluster.ts'
import { BOUNDED, fmt, median, ratio, repeat } from './stats.ts'

const MiB = 1024 * 1024
const RUNS = 5
const TRANSFER = 64 * MiB

// Page code is passed as strings: a bundler or tsx must not rewrite it (helpers like __name do not exist there).
const RANDOM_ID = `() => Array.from(crypto.getRandomValues(new Uint8Array(28)), (b) => b.toString(16).padStart(2, '0')).join('')`

/** A node page's store, peers and a bare IndexedDB / RTCDataChannel beside them. */
async function pageCall<T>(page: BenchCluster['nodes'][number]['page'], code: string): Promise<T> {
  return page.evaluate<T>(`(async () => { const randomId = ${RANDOM_ID}; const node = window.shoalNode; ${code} })()`)
}

/** Node → node over our PeerJS data plane vs a bare RTCDataChannel between the same two pages. */
async function transfer(c: BenchCluster) {
  const [a, b] = c.nodes
  if (!a || !b) throw new Error('two nodes needed')
  const id = await pageCall<string>(
    a.page,
    `const id = randomId(); await node.store.put(id, new Uint8Array(${TRANSFER}).fill(5)); return id`,
  )
  const oursRun = () =>
    pageCall<number>(
      b.page,
      `const t0 = performance.now(); const bytes = await node.peers.fetch(${JSON.stringify(a.nodeId)}, ${JSON.stringify(id)}); if (bytes.byteLength !== ${TRANSFER}) throw new Error('short'); return ${TRANSFER / MiB} / ((performance.now() - t0) / 1000)`,
    )

  // The baseline: a fresh RTCPeerConnection pair, signalled by hand, 256 KiB chunks, 8 MiB high / 2 MiB low water.
  const offer = await pageCall<RTCSessionDescriptionInit>(
    a.page,
    `const pc = new RTCPeerConnection({ iceServers: [] }); window.bare = { pc, dc: pc.createDataChannel('bare', { ordered: true }) };
     await pc.setLocalDescription(await pc.createOffer());
     await new Promise((r) => (pc.iceGatheringState === 'complete' ? r() : pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && r())));
     return pc.localDescription.toJSON()`,
  )
  const answer = await pageCall<RTCSessionDescriptionInit>(
    b.page,
    `const pc = new RTCPeerConnection({ iceServers: [] }); window.bare = { pc, received: 0, waiters: [] };
     pc.ondatachannel = (e) => { const dc = e.channel; dc.binaryType = 'arraybuffer'; dc.onmessage = (m) => { window.bare.received += m.data.byteLength; for (const w of window.bare.waiters) w(); } };
     await pc.setRemoteDescription(${JSON.stringify(offer)}); await pc.setLocalDescription(await pc.createAnswer());
     await new Promise((r) => (pc.iceGatheringState === 'complete' ? r() : pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && r())));
     return pc.localDescription.toJSON()`,
  )
  await pageCall(
    a.page,
    `await window.bare.pc.setRemoteDescription(${JSON.stringify(answer)}); const dc = window.bare.dc; if (dc.readyState !== 'open') await new Promise((r) => dc.addEventListener('open', r))`,
  )
  const bareRun = async () => {
    const done = pageCall<number>(
      b.page,
      `window.bare.received = 0; const t0 = performance.now(); await new Promise((r) => window.bare.waiters = [() => window.bare.received >= ${TRANSFER} && r()]); return performance.now() - t0`,
    )
    await pageCall(
      a.page,
      `const dc = window.bare.dc; dc.bufferedAmountLowThreshold = 2 * 1024 * 1024; const chunk = new Uint8Array(256 * 1024).fill(5);
       for (let sent = 0; sent < ${TRANSFER}; sent += chunk.byteLength) {
         if (dc.bufferedAmount > 8 * 1024 * 1024) await new Promise((r) => dc.addEventListener('bufferedamountlow', r, { once: true }));
         dc.send(chunk);
       }`,
    )
    return TRANSFER / MiB / ((await done) / 1000)
  }
  // Warm both paths, then alternate them so the machine's noise falls on both alike.
  await oursRun()
  await bareRun()
  const o: number[] = []
  const bb: number[] = []
  for (let i = 0; i < RUNS; i++) {
    o.push(await oursRun())
    bb.push(await bareRun())
  }
  await pageCall(a.page, `await node.store.delete(${JSON.stringify(id)})`)
  const ours = { median: median(o), runs: o.map(Math.round) }
  const bare = { median: median(bb), runs: bb.map(Math.round) }
  return { oursMiBps: ours, bareRtcDataChannelMiBps: bare, ratio: ratio(ours.median, bare.median), goal: 0.8 }
}

/** The plasma store's put/get against bare IndexedDB (idb-free, same 16 × 16 MiB ArrayBuffers) in the same page. */
async function plasma(c: BenchCluster) {
  const page = (c.nodes[0] as BenchCluster['nodes'][number]).page
  const run = () =>
    pageCall<{ put: number; get: number; hotGet: number; barePut: number; bareGet: number }>(
      page,
      `const N = 16, size = 16 * 1024 * 1024, data = new Uint8Array(size).fill(1), ids = Array.from({ length: N }, randomId), store = node.store;
       let t0 = performance.now(); for (const id of ids) await store.put(id, data); const put = N * 16 / ((performance.now() - t0) / 1000);
       t0 = performance.now(); for (const id of ids) await store.read(id); const hotGet = N * 16 / ((performance.now() - t0) / 1000);
       store.dropHot();
       t0 = performance.now(); for (const id of ids) await store.read(id); const get = N * 16 / ((performance.now() - t0) / 1000);
       for (const id of ids) await store.delete(id);
       const db = await new Promise((res, rej) => { const r = indexedDB.open('bench-bare-' + randomId(), 1); r.onupgradeneeded = () => r.result.createObjectStore('x'); r.onsuccess = () => res(r.result); r.onerror = () => rej(r.error) });
       const op = (mode, f) => new Promise((res, rej) => { const tx = db.transaction('x', mode); const r = f(tx.objectStore('x')); tx.oncomplete = () => res(r.result); tx.onerror = () => rej(tx.error) });
       t0 = performance.now(); for (let i = 0; i < N; i++) await op('readwrite', (s) => s.put(data.buffer, i)); const barePut = N * 16 / ((performance.now() - t0) / 1000);
       t0 = performance.now(); for (let i = 0; i < N; i++) await op('readonly', (s) => s.get(i)); const bareGet = N * 16 / ((performance.now() - t0) / 1000);
       const name = db.name; db.close(); indexedDB.deleteDatabase(name);
       return { put, get, hotGet, barePut, bareGet }`,
    )
  await run()
  const runs: { put: number; get: number; hotGet: number; barePut: number; bareGet: number }[] = []
  for (let i = 0; i < RUNS; i++) runs.push(await run())
  const m = (k: keyof (typeof runs)[number]) => median(runs.map((r) => r[k]))
  return {
    putMiBps: m('put'),
    getMiBps: m('get'),
    hotGetMiBps: m('hotGet'),
    bareIdbPutMiBps: m('barePut'),
    bareIdbGetMiBps: m('bareGet'),
    ratios: { put: ratio(m('put'), m('barePut')), get: ratio(m('get'), m('bareGet')) },
    goal: 0.9,
  }
}

/** Spilling to OPFS through the spill worker against a bare OPFS sync-handle write of the same bytes from it. */
async function spill(c: BenchCluster) {
  const page = (c.nodes[1] as BenchCluster['nodes'][number]).page
  const run = () =>
    pageCall<{ spill: number; page: number; bare: number; floor: number }>(
      page,
      `const N = 8, size = 16 * 1024 * 1024, data = new Uint8Array(size).fill(2), ids = Array.from({ length: N }, randomId), store = node.store;
       for (const id of ids) await store.put(id, data);
       const floorMs = await store.bareReadWriteMs(ids);
       const tPage = performance.now();
       const r = await store.spillNow(ids);
       const pageMs = performance.now() - tPage;
       const bareMs = await store.bareOpfsWriteMs(N, size);
       for (const id of ids) await store.delete(id);
       return { spill: r.bytes / 1024 / 1024 / (r.ms / 1000), page: r.bytes / 1024 / 1024 / (pageMs / 1000), bare: N * 16 / (bareMs / 1000), floor: N * 16 / (floorMs / 1000) }`,
    )
  await run()
  const runs: { spill: number; page: number; bare: number; floor: number }[] = []
  for (let i = 0; i < RUNS; i++) runs.push(await run())
  const s = median(runs.map((r) => r.spill))
  const b = median(runs.map((r) => r.bare))
  const f = median(runs.map((r) => r.floor))
  return {
    spillMiBps: s,
    spillEndToEndMiBps: median(runs.map((r) => r.page)),
    bareOpfsWriteMiBps: b,
    bareIdbReadPlusOpfsWriteMiBps: f,
    ratio: ratio(s, b),
    ratioToFloor: ratio(s, f),
    goal: 0.8,
  }
}

/** Small put and get calls per second from one Node driver, beside a bare msgpack WebSocket echo round trip. */
async function smallCalls(c: BenchCluster) {
  const mesh = await connect({ address: c.url })
  const other = await connect({ address: c.url })
  const N = 500
  const puts = await repeat(RUNS, async () => {
    const t0 = performance.now()
    for (let i = 0; i < N; i++) await mesh.put({ i, tag: 'small' })
    return N / ((performance.now() - t0) / 1000)
  })
  // get of refs this connection did not make: each is a subscribe round trip through the coordinator.
  const refs = await Promise.all(Array.from({ length: N * (RUNS + 1) }, (_, i) => mesh.put({ i })))
  let k = 0
  const gets = await repeat(RUNS, async () => {
    const t0 = performance.now()
    for (let i = 0; i < N; i++) await other.get(refs[k++] as (typeof refs)[number], BOUNDED)
    return N / ((performance.now() - t0) / 1000)
  })
  await mesh.close()
  await other.close()

  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' })
  wss.on('connection', (s) => s.on('message', (d: Buffer) => s.send(encodeFrame(decodeFrame(new Uint8Array(d))))))
  await new Promise((r) => wss.once('listening', r))
  const { WebSocket } = await import('ws')
  const ws = new WebSocket(`ws://127.0.0.1:${(wss.address() as { port: number }).port}`)
  await new Promise((r) => ws.once('open', r))
  const echo = await repeat(RUNS, async () => {
    const t0 = performance.now()
    for (let i = 0; i < N; i++) {
      const back = new Promise((r) => ws.once('message', r))
      ws.send(encodeFrame({ type: 'put', i }))
      await back
    }
    return N / ((performance.now() - t0) / 1000)
  })
  ws.close()
  wss.close()
  return { putsPerSec: puts, getsPerSec: gets, bareWebSocketEchoPerSec: echo }
}

export async function benchObjects(c: BenchCluster) {
  const t = await transfer(c)
  const p = await plasma(c)
  const s = await spill(c)
  const small = await smallCalls(c)
  console.log(`objects (medians of ${RUNS} runs after a warm-up; MiB/s)`)
  console.log(
    `  node→node transfer, 64 MiB:        ${fmt(t.oursMiBps.median).padStart(6)}   bare RTCDataChannel: ${fmt(t.bareRtcDataChannelMiBps.median).padStart(6)}   ratio ${t.ratio} (goal ≥ 0.8)`,
  )
  console.log(
    `  plasma put, 16 × 16 MiB:           ${fmt(p.putMiBps).padStart(6)}   bare IndexedDB put:  ${fmt(p.bareIdbPutMiBps).padStart(6)}   ratio ${p.ratios.put} (goal ≥ 0.9)`,
  )
  console.log(
    `  plasma get (cold, from IndexedDB):  ${fmt(p.getMiBps).padStart(6)}   bare IndexedDB get:  ${fmt(p.bareIdbGetMiBps).padStart(6)}   ratio ${p.ratios.get} (goal ≥ 0.9)`,
  )
  console.log(
    `  plasma get (hot, from memory):     ${Number.isFinite(p.hotGetMiBps) ? fmt(p.hotGetMiBps).padStart(6) : ' > 1e6'}   (the memory tier: no IndexedDB read)`,
  )
  console.log(
    `  spill to OPFS, 8 × 16 MiB:         ${fmt(s.spillMiBps).padStart(6)}   bare OPFS write (8 files): ${fmt(s.bareOpfsWriteMiBps).padStart(6)}   ratio ${s.ratio} (goal ≥ 0.8)`,
  )
  console.log(
    `                                              bare IDB read + OPFS write: ${fmt(s.bareIdbReadPlusOpfsWriteMiBps)}   ratio ${s.ratioToFloor}`,
  )
  console.log(
    `                                              end to end from the page (with the copy to the spill worker): ${fmt(s.spillEndToEndMiBps)}`,
  )
  console.log(
    `  small put calls/s:                 ${fmt(small.putsPerSec.median).padStart(6)}   bare WebSocket echo: ${fmt(small.bareWebSocketEchoPerSec.median).padStart(6)} round trips/s`,
  )
  console.log(`  small get calls/s (subscribe):     ${fmt(small.getsPerSec.median).padStart(6)}`)
  return { transfer: t, plasma: p, spill: s, small }
}
