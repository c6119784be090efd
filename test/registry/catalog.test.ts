// The filtered catalog without sockets: a fake registry that pages like distribution does.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { filteredCatalog, type UpstreamAnswer } from '../../src/registry/catalog.js'

/** distribution's GetCatalog over `names` (sorted): n defaults to 100, Link when the page is full. */
function registry (names: string[], maxEntries = 1000): { fetch: (q: string) => Promise<UpstreamAnswer>, queries: string[] } {
  const queries: string[] = []
  return {
    queries,
    async fetch (query) {
      queries.push(query)
      const p = new URLSearchParams(query)
      const n = p.has('n') ? Number(p.get('n')) : 100
      if (n > maxEntries) return { status: 400, headers: { 'content-type': 'application/json' }, body: Buffer.from('{"errors":[{"code":"PAGINATION_NUMBER_INVALID"}]}') }
      const after = names.filter((x) => x > (p.get('last') ?? ''))
      const repositories = after.slice(0, n)
      const headers: UpstreamAnswer['headers'] = {}
      if (repositories.length === n && n > 0) headers.link = `</v2/_catalog?last=${repositories.at(-1)}&n=${n}>; rel="next"`
      return { status: 200, headers, body: Buffer.from(JSON.stringify({ repositories })) }
    }
  }
}

const names = ['a/1', 'a/2', 'private/1', 'private/2', 'private/3', 'private/4', 'private/5', 'team/1', 'team/2', 'team/3', 'zed/1']
const visible = (name: string) => name.startsWith('team/') || name === 'a/2'
const body = (a: { body: Buffer }) => (JSON.parse(a.body.toString()) as { repositories: string[] }).repositories

test('pages of n visible names, fetching registry pages until they are found; the Link continues after the last one shown', async () => {
  const r = registry(names)
  const seen: string[] = []
  let query = 'n=2'
  for (let pages = 0; pages < 10; pages++) {
    const answer = await filteredCatalog(query, visible, r.fetch)
    assert.equal(answer.status, 200)
    const list = body(answer)
    assert.ok(list.length <= 2)
    seen.push(...list)
    const link = answer.headers.link as string | undefined
    if (link === undefined) break
    assert.equal(list.length, 2, 'a page with a next link is full')
    query = /<\/v2\/_catalog\?([^>]*)>; rel="next"/.exec(link)?.[1] ?? assert.fail(link)
  }
  assert.deepEqual(seen, ['a/2', 'team/1', 'team/2', 'team/3'])
  assert.ok(r.queries.length > 3, 'hidden pages were skipped by fetching more')
})

test('without n: up to the registry\'s default of 100, over as many registry pages as it takes', async () => {
  const many = Array.from({ length: 450 }, (_, i) => `r/${String(i).padStart(3, '0')}`)
  const r = registry(many)
  const answer = await filteredCatalog('', (name) => Number(name.slice(2)) % 3 === 0, r.fetch)
  assert.equal(body(answer).length, 100)
  assert.equal(body(answer)[99], 'r/297')
  assert.equal(answer.headers.link, '</v2/_catalog?last=r%2F297&n=100>; rel="next"')
  assert.deepEqual(r.queries, ['', 'last=r%2F099', 'last=r%2F199'])
})

test('the end of the catalog: no Link; nothing visible: an empty list; errors and n=0 pass through', async () => {
  const r = registry(names)
  const none = await filteredCatalog('n=3', () => false, r.fetch)
  assert.deepEqual(body(none), [])
  assert.equal(none.headers.link, undefined)
  const last = await filteredCatalog('n=5&last=team%2F1', visible, r.fetch)
  assert.deepEqual(body(last), ['team/2', 'team/3'])
  assert.equal(last.headers.link, undefined)
  const tooMany = await filteredCatalog('n=5000', visible, r.fetch)
  assert.equal(tooMany.status, 400)
  const zero = await filteredCatalog('n=0', visible, r.fetch)
  assert.deepEqual(body(zero), [])
  await assert.rejects(filteredCatalog('', visible, async () => ({ status: 200, headers: {}, body: Buffer.from('<html>') })), /no list of repositories/)
})
