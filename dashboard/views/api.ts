/** The coordinator answered, but not with what we asked for: the section shows why, the banner stays down. */
export class HttpError extends Error {
  override readonly name = 'HttpError'
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message)
  }
}

/** Fetches one state endpoint. Network failures and aborts reject with the fetch error, not an HttpError. */
export async function getJson<T>(path: string, signal: AbortSignal): Promise<T> {
  const res = await fetch(path, { signal, headers: { accept: 'application/json' }, cache: 'no-store' })
  if (!res.ok) {
    const body = await res.text().catch(() => '')
    throw new HttpError(res.status, `${res.status} ${res.statusText}${body ? `: ${body.slice(0, 200)}` : ''}`)
  }
  return (await res.json()) as T
}

/** Distinguishes "the coordinator is not there" from "it is there and said no". */
export const isUnreachable = (err: unknown): boolean => !(err instanceof HttpError) && !(err instanceof SyntaxError)

export function errorText(err: unknown): string {
  if (err instanceof HttpError) return `Request failed: ${err.message}`
  if (err instanceof SyntaxError) return `Bad JSON from the coordinator: ${err.message}`
  if (err instanceof Error) return err.message
  return String(err)
}
