// GET /v2/_catalog for a requester who may see part of it: the registry's pages, filtered
// (src/registry/catalog.ts), answered by berth.
import type { ServerResponse } from 'node:http'
import type { FastifyRequest } from 'fastify'
import { fetchWhole } from '../upstream/fetch.js'
import { filteredCatalog } from '../registry/catalog.js'
import { API_VERSION, API_VERSION_HEADER, UpstreamUnavailableError, writeRegistryError } from '../errors.js'
import { clientResponseHeaders, upstreamRequestHeaders } from './headers.js'
import { clientSideOf, type ProxyContext } from './send.js'

export function listCatalog (ctx: ProxyContext, request: FastifyRequest, res: ServerResponse, visible: (name: string) => boolean): void {
  const url = request.raw.url ?? ''
  const q = url.indexOf('?')
  const pool = ctx.pool()
  const { headers, publicOrigin } = upstreamRequestHeaders(request.raw, clientSideOf(request, ctx.options()))
  const fetchPage = async (query: string) => {
    const upstream = pool.pick()
    if (upstream === null) throw new UpstreamUnavailableError()
    request.upstreamAddress = upstream.address
    return await fetchWhole(upstream, { path: `/v2/_catalog${query === '' ? '' : `?${query}`}`, method: 'GET', headers })
  }
  filteredCatalog(q === -1 ? '' : url.slice(q + 1), visible, fetchPage).then((answer) => {
    if (res.destroyed) return
    const out = clientResponseHeaders(answer.headers, pool.origins, publicOrigin)
    delete out['content-length']
    res.writeHead(answer.status, { ...out, 'content-length': answer.body.length, [API_VERSION_HEADER]: API_VERSION })
    res.end(answer.body)
    request.bodyBytesSent = answer.body.length
  }, (err: Error) => {
    request.log.error({ err }, 'catalog: the registry could not be listed')
    request.bodyBytesSent = writeRegistryError(res, new UpstreamUnavailableError())
  })
}
