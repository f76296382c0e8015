/** Where a tab keeps its token: a reload keeps it, but it is not written to disk or shared with other tabs. */
const TOKEN_KEY = 'shoal.token'

/**
 * Moves `?token=` from the address into sessionStorage and returns this tab's token, if any. replaceState rewrites
 * the address in place (no history entry), so the token is not left in the address bar, the history or a Referer.
 * An empty `?token=` forgets the stored one. Call it before the first request. Both pages
 * that take a token in their URL use it: `/node` and `/dashboard/`.
 */
export function takeToken(): string | undefined {
  const url = new URL(location.href)
  const fromUrl = url.searchParams.get('token')
  if (fromUrl !== null) {
    url.searchParams.delete('token')
    history.replaceState(history.state, '', url)
  }
  try {
    if (fromUrl) sessionStorage.setItem(TOKEN_KEY, fromUrl)
    else if (fromUrl === '') sessionStorage.removeItem(TOKEN_KEY)
    return sessionStorage.getItem(TOKEN_KEY) || undefined
  } catch {
    // Storage can be disabled: the token still works until the page is reloaded.
    return fromUrl || undefined
  }
}

/** `text` with `token` cut out (a page shows or logs messages that may quote the URL it was opened with). */
export const redact = (text: string, token: string | undefined): string => (token ? text.split(token).join('…') : text)
