// Reads the request target once (src/registry/target.ts) and decorates request.registryAction, the one
// place every later plugin (auth, access, metrics, the proxy, user plugins) reads; refuses the rest.
import fp from 'fastify-plugin'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { BadRequestError, BadRequestTargetError, NameInvalidError } from '../src/errors.js'
import { readTarget } from '../src/registry/target.js'

function registryActionHook (request: FastifyRequest, reply: FastifyReply, done: (err?: Error) => void): void {
  const target = readTarget(request.raw)
  if ('action' in target) {
    request.registryAction = target.action
    done()
    return
  }
  switch (target.refused) {
    case 'framing':
      // Request smuggling material: refuse, and close, since the framing of what follows is in doubt.
      reply.header('connection', 'close')
      done(new BadRequestError(target.message))
      return
    case 'absolute':
      reply.header('connection', 'close')
      done(new BadRequestTargetError(target.message))
      return
    case 'path':
      done(new BadRequestTargetError(target.message))
      return
    case 'name':
      done(new NameInvalidError())
  }
}

export default fp(async function requestTarget (fastify) {
  fastify.addHook('onRequest', registryActionHook)
}, { name: 'berth-request-target', fastify: '5.x', dependencies: ['berth-request-state'], decorators: { request: ['registryAction'] } })
