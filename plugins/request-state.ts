// The per-request fields every plugin reads or writes (typed in src/types.ts), decorated once, before
// any hook runs, so that each plugin only declares which of them it needs.
import fp from 'fastify-plugin'

export default fp(async function requestState (fastify) {
  fastify.decorateRequest('registryAction', null)
  fastify.decorateRequest('catalogFilter', null)
  fastify.decorateRequest('user', null)
  fastify.decorateRequest('clientAddress', '')
  fastify.decorateRequest('viaTrustedProxy', false)
  fastify.decorateRequest('upstreamAddress', '')
  fastify.decorateRequest('bodyBytesSent', 0)
  fastify.decorateRequest('bodyBytesReceived', 0)
}, { name: 'berth-request-state', fastify: '5.x' })
