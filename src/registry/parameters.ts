// The request parameters the registry reads beyond the path, read the way the registry reads them, so
// that none can name a repository berth did not check. The registry (distribution, Go's net/http) reads
// `from`, `mount`, `digest` and `_state` with r.FormValue: the query string, and for POST, PUT and PATCH
// also a form body (application/x-www-form-urlencoded or multipart/form-data), whose values win over
// the query's. No registry client sends a form body, so berth refuses them outright instead of parsing
// them as Go would; the query's `from` (every value, not only the first that Go takes) is checked by
// the access rules.

const FORM_TYPES = new Set(['application/x-www-form-urlencoded', 'multipart/form-data'])
// Visible ASCII, space and tab: Go lower-cases Unicode before comparing (U+0130 becomes "i", U+212A "k"),
// so a non-ASCII Content-Type could be a form type to the registry and not to a byte-wise check.
const ASCII_VALUE = /^[\t\x20-\x7e]*$/

/** Why the registry could read this request's body as a form, or null. */
export function formBodyProblem (headers: { 'content-type'?: string }, rawHeaders: string[]): string | null {
  let types = 0
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (rawHeaders[i].length === 12 && rawHeaders[i].toLowerCase() === 'content-type') types++
  }
  if (types > 1) return 'more than one Content-Type header'
  const type = headers['content-type']
  if (type === undefined) return null
  if (!ASCII_VALUE.test(type)) return 'Content-Type must be ASCII'
  // mime.ParseMediaType: what comes before the first ';', trimmed and lower-cased.
  const semicolon = type.indexOf(';')
  const media = (semicolon === -1 ? type : type.slice(0, semicolon)).trim().toLowerCase()
  return FORM_TYPES.has(media) ? `form bodies (${media}) are not part of the registry API` : null
}

/** Every repository a cross-repository mount names (`POST …/blobs/uploads/?mount=<digest>&from=<name>`). */
export function mountSources (method: string | undefined, url: string): string[] {
  const q = url.indexOf('?')
  // Stryker disable next-line ConditionalExpression,UnaryOperator: equivalent, a canonical path parsed as a query has no `from` key
  if (q === -1 || method !== 'POST') return []
  // Every non-empty `from`, with or without `mount`: the registry takes the first, a checker takes all.
  return new URLSearchParams(url.slice(q + 1)).getAll('from').filter((from) => from !== '')
}
