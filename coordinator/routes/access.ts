import type { MiddlewareHandler } from 'hono'
import { bearerOf, type Credentials, isLoopback, originAllowed } from '../auth.ts'
import type { Viewer } from '../tenancy.ts'

declare module 'hono' {
  interface ContextVariableMap {
    /** Who is asking (set by requireToken): the state API and metrics show them only what is theirs. */
    viewer: Viewer
  }
}

const refuse = (status: 401 | 403, code: string, message: string) =>
  new Response(JSON.stringify({ error: { code, message } }), { status, headers: { 'content-type': 'application/json' } })

/**
 * HTTP surfaces that serve cluster data: `Authorization: Bearer <token>` of an admin or a driver (a node token has no
 * business reading the state API). Refusals are 401/403 with a one-line reason; the token itself is never echoed.
 */
export function requireToken(credentials: Credentials): MiddlewareHandler {
  return async (c, next) => {
    const token = bearerOf(c.req.header('authorization'))
    const who = credentials.authenticate(token)
    if (!who) {
      return refuse(
        401,
        'UNAUTHORIZED',
        token ? 'the coordinator refused the token' : 'this coordinator needs a token: send Authorization: Bearer <token>',
      )
    }
    if (who.role === 'node') return refuse(403, 'FORBIDDEN', 'a node token cannot read cluster data (use an admin or driver token)')
    c.set('viewer', { admin: who.role === 'admin', tenant: who.tenant })
    await next()
  }
}

/**
 * DNS rebinding: without tokens everyone who reaches the coordinator is its admin, and a page on a domain that
 * resolves to 127.0.0.1 would reach it from a visitor's browser with its own name in Host. So without tokens (and
 * not `--insecure`), only requests that name the coordinator by a loopback name are served.
 */
export function requireLocalHost(credentials: Credentials, insecure: boolean): MiddlewareHandler {
  return async (c, next) => {
    if (!credentials.required && !insecure) {
      const host = c.req.header('host') ?? ''
      let name: string
      try {
        name = new URL(`http://${host}`).hostname
      } catch {
        name = ''
      }
      if (!isLoopback(name))
        return refuse(403, 'FORBIDDEN', `this coordinator has no tokens and serves only localhost, not '${host.slice(0, 100)}'`)
    }
    await next()
  }
}

/**
 * WebSockets opened by a browser must come from an allowed origin: the coordinator's own pages, localhost (unless an
 * allow-list is given), or the list. A page elsewhere cannot use a visitor's browser to reach a coordinator on their
 * network. Non-browser clients send no Origin: their token decides.
 */
export function requireOrigin(allowed: readonly string[] | undefined): MiddlewareHandler {
  return async (c, next) => {
    const origin = c.req.header('origin')
    if (!originAllowed(origin, c.req.header('host'), allowed)) {
      return refuse(403, 'FORBIDDEN', `origin ${origin?.slice(0, 100)} may not open this socket (see --allowed-origins)`)
    }
    await next()
  }
}
