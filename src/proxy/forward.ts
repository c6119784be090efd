// Where a request goes once every check passed: the filtered catalog, the blob cache, or the upstreams.
// The route (plugins/proxy.ts) calls forward() with the reply hijacked.
import type { ServerResponse } from 'node:http'
import type { FastifyRequest } from 'fastify'
import { checkable } from '../registry/digest.js'
import { sendUpstream, type ProxyContext } from './send.js'
import { fromCache } from './cached.js'
import { listCatalog } from './catalog.js'

export type { ProxyContext, ProxyOptions } from './send.js'

export function forward (ctx: ProxyContext, request: FastifyRequest, res: ServerResponse): void {
  const action = request.registryAction
  const method = request.raw.method
  const cache = ctx.cache
  const repository = action?.repository ?? null
  if (cache !== null && repository !== null && method === 'DELETE') {
    // A blob or a manifest goes: what berth remembers of the repository goes with it, also once the
    // registry answered (a download confirming the repository meanwhile must not outlive the delete).
    cache.forgetRepository(repository)
    res.once('finish', () => { cache.forgetRepository(repository) })
  }
  if (request.catalogFilter !== null && action?.kind === 'catalog' && method === 'GET') {
    listCatalog(ctx, request, res, request.catalogFilter)
    return
  }
  const reference = action?.reference ?? null
  if (cache !== null && repository !== null && action?.kind === 'blob' && (method === 'GET' || method === 'HEAD') && checkable(reference)) {
    const c = { cache, repository, digest: reference }
    fromCache(ctx, request, res, c).catch((err: Error) => {
      request.log.error({ err }, 'blob cache: could not serve a copy')
      if (!res.headersSent) sendUpstream(ctx, request, res, null)
      else res.destroy()
    })
    return
  }
  sendUpstream(ctx, request, res, null)
}

