// GET /v2/_catalog for a user who may see only part of it: the registry's pages, filtered, with its
// pagination kept right. Pages are fetched from the registry until `n` visible names are found or the
// catalog ends; the Link to the next page continues after the last name the client was shown.

export interface UpstreamAnswer {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: Buffer
}

/** Fetches `/v2/_catalog?<query>` from the registry. */
export type FetchCatalogPage = (query: string) => Promise<UpstreamAnswer>

/** The registry's page size when a request names none (distribution's defaultReturnedEntries). */
const DEFAULT_ENTRIES = 100

export interface CatalogAnswer {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: Buffer
}

function page (names: string[], next: string | null, want: number): CatalogAnswer {
  const headers: CatalogAnswer['headers'] = { 'content-type': 'application/json; charset=utf-8' }
  // The registry's own form: keys sorted as Go's url.Values.Encode does, relative to the API root.
  if (next !== null) headers.link = `</v2/_catalog?${new URLSearchParams({ last: next, n: String(want) }).toString()}>; rel="next"`
  return { status: 200, headers, body: Buffer.from(JSON.stringify({ repositories: names }) + '\n') }
}

function repositoriesOf (body: Buffer): string[] | null {
  try {
    const parsed = JSON.parse(body.toString('utf8')) as { repositories?: unknown }
    const list = parsed.repositories
    return Array.isArray(list) && list.every((n) => typeof n === 'string') ? list as string[] : null
  } catch {
    return null
  }
}

/**
 * The catalog as `visible` lets the client see it. `query` is the client's query string; an answer from
 * the registry that is not a 200 (an error for a bad `n`, say) is passed on as it is; a 200 that is not a
 * catalog page throws.
 */
export async function filteredCatalog (query: string, visible: (name: string) => boolean, fetchPage: FetchCatalogPage): Promise<CatalogAnswer> {
  const params = new URLSearchParams(query)
  const nParam = params.get('n')
  // The registry reads `n` with strconv.Atoi and ignores what does not parse: pass on only a plain number.
  const n = nParam !== null && /^\d{1,9}$/.test(nParam) ? Number(nParam) : null
  const want = n ?? DEFAULT_ENTRIES
  let cursor = params.get('last') ?? ''
  if (want === 0) return await fetchPage(query)
  const names: string[] = []
  for (;;) {
    const q = new URLSearchParams()
    if (n !== null) q.set('n', String(n))
    if (cursor !== '') q.set('last', cursor)
    const answer = await fetchPage(q.toString())
    if (answer.status !== 200) return answer
    const repositories = repositoriesOf(answer.body)
    if (repositories === null) throw new Error('the registry answered GET /v2/_catalog with no list of repositories')
    const more = answer.headers.link !== undefined
    for (let i = 0; i < repositories.length; i++) {
      if (!visible(repositories[i])) continue
      names.push(repositories[i])
      if (names.length === want) return page(names, i < repositories.length - 1 || more ? repositories[i] : null, want)
    }
    if (!more || repositories.length === 0) return page(names, null, want)
    cursor = repositories[repositories.length - 1]
  }
}
