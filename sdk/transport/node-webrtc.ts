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
    for (const name of ['RTCSessionDescription', 'RTCIceCandidate', 'RTCDataChannel']) g[name] ??= poly[name]
    g.RTCPeerConnection ??= withEscapedTurnCredentials(poly.RTCPeerConnection as PeerConnectionClass)
    g.WebSocket ??= ((await import(/* @vite-ignore */ wsName)) as { WebSocket: unknown }).WebSocket
    return true
  } catch {
    return false
  }
}

type IceServer = { urls: string | string[]; username?: string; credential?: string }
type PeerConnectionClass = new (config?: { iceServers?: IceServer[] }) => object

/**
 * node-datachannel's polyfill hands TURN servers to libdatachannel as `turn:USER:PASS@HOST`, which splits the user at
 * the first `:` and percent-decodes both parts. TURN REST usernames are `expiry:id` and passwords base64 (`/`, `+`):
 * escaped here, they reach the TURN server as the coordinator minted them.
 */
function withEscapedTurnCredentials(Base: PeerConnectionClass): PeerConnectionClass {
  return class extends Base {
    constructor(config?: { iceServers?: IceServer[] }) {
      super(
        config && {
          ...config,
          iceServers: config.iceServers?.map((s) =>
            s.username && s.credential
              ? { ...s, username: encodeURIComponent(s.username), credential: encodeURIComponent(s.credential) }
              : s,
          ),
        },
      )
    }
  }
}
