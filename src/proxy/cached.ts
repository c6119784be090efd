// A blob GET or HEAD when the cache is on: a copy on disk, a fill another download is growing, or the
// upstream. A copy is served only for a repository the upstream confirmed holds that blob (a download or a
// HEAD, remembered for cache.confirmFor), after every access rule ran for the request, so the cache never
// hands one repository's blob to a request for another.
import type { ServerResponse } from 'node:http'
import type { FastifyRequest } from 'fastify'
import { fetchWhole } from '../upstream/fetch.js'
import { isPeerRequest } from '../cluster/placement.js'
import { followFill, serveCopy } from '../cache/serve.js'
import { upstreamRequestHeaders } from './headers.js'
import type { Cacheable } from './exchange.js'
import { clientSideOf, sendUpstream, watchClient, type ProxyContext } from './send.js'

/** How long a miss waits for another download of the same blob to start its fill (nginx's
 * proxy_cache_lock_timeout); past that it fetches the blob itself. */
const LEADER_WAIT = 5000

export async function fromCache (ctx: ProxyContext, request: FastifyRequest, res: ServerResponse, c: Cacheable): Promise<void> {
  const { cache, repository, digest } = c
  const followable = request.raw.method === 'GET' && request.headers.range === undefined
  if (cache.sizeOf(digest) === undefined && cache.filling(digest) === undefined) {
    // Another replica owns this blob: ask it (it serves its copy or fills it once); a peer's request never hops again.
    const owner = request.raw.method === 'GET' && !isPeerRequest(request.raw) ? ctx.placement?.poolFor(digest) ?? null : null
    if (owner !== null) {
      const placement = ctx.placement as NonNullable<typeof ctx.placement>
      sendUpstream({ ...ctx, pool: () => owner, extraHeaders: (r) => placement.sign(r.raw.url ?? '') }, request, res, null)
      return
    }
    const leader = followable ? cache.leader(digest) : undefined
    if (leader !== undefined) await Promise.race([leader, new Promise((resolve) => setTimeout(resolve, LEADER_WAIT).unref())])
    if (cache.sizeOf(digest) === undefined && !(followable && cache.filling(digest) !== undefined)) {
      cache.stats.misses++
      // The first miss of a GET leads: the misses that follow wait for its fill and read it as it grows.
      const lead = followable && cache.leader(digest) === undefined ? cache.lead(digest) : undefined
      sendUpstream(ctx, request, res, { ...c, lead })
      return
    }
  }
  if (!cache.confirmed(repository, digest)) {
    const status = await confirmingHead(ctx, request, `/v2/${repository}/blobs/${digest}`)
    if (status === 404) cache.unconfirm(repository, digest)
    if (status !== 200) {
      // Not there (404), or no answer: the upstream answers the request itself, as without a cache.
      sendUpstream(ctx, request, res, null)
      return
    }
    cache.confirm(repository, digest)
  }
  if (res.destroyed) return
  watchClient(ctx, request, res)
  if (cache.sizeOf(digest) !== undefined && await serveCopy(cache, request, res, digest)) return
  const fill = cache.filling(digest)
  if (followable && fill !== undefined) {
    cache.stats.followers++
    // The fill could not finish: this client continues from the upstream where it is.
    if (await followFill(fill, request, res, (verifier) => { sendUpstream(ctx, request, res, null, verifier) })) return
    if (cache.sizeOf(digest) !== undefined && await serveCopy(cache, request, res, digest)) return
  }
  cache.stats.misses++
  sendUpstream(ctx, request, res, c)
}

/** The status of a HEAD for `path` on a server the pool picks, with the request's own headers minus
 * Range and conditions (a HEAD asks "is it there"); 0 when none answered. */
async function confirmingHead (ctx: ProxyContext, request: FastifyRequest, path: string): Promise<number> {
  const upstream = ctx.pool().pick()
  if (upstream === null) return 0
  const all = upstreamRequestHeaders(request.raw, clientSideOf(request, ctx.options())).headers
  const headers: string[] = []
  for (let i = 0; i < all.length; i += 2) {
    if (all[i] !== 'range' && !all[i].startsWith('if-')) headers.push(all[i], all[i + 1])
  }
  try {
    return (await fetchWhole(upstream, { path, method: 'HEAD', headers })).status
  } catch {
    return 0
  }
}
