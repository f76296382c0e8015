import { redact } from '../../sdk/page-token.ts'

/** The coordinator answered, but not with what we asked for: the section shows why, the banner stays down. */
export class HttpError extends Error {
  override readonly name: string = 'HttpError'
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message)
  }
}

/** The coordinator wants a token (none was sent) or refused the one sent: reading the state needs another. */
export class AuthError extends HttpError {
  override readonly name = 'AuthError'
  constructor(
    status: number,
    message: string,
    readonly tokenSent: boolean,
  ) {
    super(status, message)
  }
}

/**
 * Fetches one state endpoint, with this tab's token as a bearer token if it has one. Network failures and aborts
 * reject with the fetch error, not an HttpError.
 */
export async function getJson<T>(path: string, signal: AbortSignal, token?: string): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' }
  if (token) headers.authorization = `Bearer ${token}`
  const res = await fetch(path, { signal, headers, cache: 'no-store' })
  if (!res.ok) {
    // Whatever the coordinator says, the token is not shown on the page.
    const body = redact(await res.text().catch(() => ''), token)
    const message = `${res.status} ${res.statusText}${body ? `: ${body.slice(0, 200)}` : ''}`
    // 403 too: a token of another role (a node's) may be refused for reading the state.
    if (res.status === 401 || res.status === 403) throw new AuthError(res.status, message, Boolean(token))
    throw new HttpError(res.status, message)
  }
  return (await res.json()) as T
}

/** Distinguishes "the coordinator is not there" from "it is there and said no". */
export const isUnreachable = (err: unknown): boolean => !(err instanceof HttpError) && !(err instanceof SyntaxError)

/** "It is there and will not let us read": the page says how to get in instead of showing each section failing. */
export const isUnauthorized = (err: unknown): err is AuthError => err instanceof AuthError

export function errorText(err: unknown): string {
  if (err instanceof AuthError) return authText(err)
  if (err instanceof HttpError) return `Request failed: ${err.message}`
  if (err instanceof SyntaxError) return `Bad JSON from the coordinator: ${err.message}`
  if (err instanceof Error) return err.message
  return String(err)
}

/** One line that says what to do: a placeholder stands for the token, whose value the page never shows. */
function authText(err: AuthError): string {
  const open = `open ${location.pathname}?token=<your token>`
  if (!err.tokenSent) return `This coordinator needs a token: ${open}`
  return `The coordinator refused this token: ${open} with a valid one`
}
