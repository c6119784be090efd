// Who the client is: request.clientAddress, the peer's address or, behind a trusted load balancer, the
// address it forwarded (see src/net.ts). Registered before every plugin that logs, throttles or forwards.
import fp from 'fastify-plugin'
import { TrustedProxies, peerAddress } from '../src/net.js'

export default fp(async function clientAddress (fastify) {
  let trusted = new TrustedProxies(fastify.berthConfig.trustedProxies)
  fastify.decorate('trustedProxies', { getter: () => trusted })
  fastify.onReload({
    name: 'trusted-proxies',
    async prepare (next) {
      const fresh = new TrustedProxies(next.trustedProxies)
      return { commit () { trusted = fresh } }
    }
  })
  fastify.addHook('onRequest', (request, _reply, done) => {
    const peer = peerAddress(request.raw)
    if (trusted.size > 0 && trusted.trusts(peer)) {
      request.viaTrustedProxy = true
      const xff = request.headers['x-forwarded-for']
      request.clientAddress = trusted.clientOf(peer, Array.isArray(xff) ? xff.join(',') : xff)
    } else {
      request.clientAddress = peer
    }
    done()
  })
}, { name: 'berth-client-address', fastify: '5.x', dependencies: ['berth-request-state'], decorators: { fastify: ['berthConfig', 'onReload'], request: ['clientAddress', 'viaTrustedProxy'] } })
