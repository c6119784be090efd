// Example plugin: refuse docker clients older than 1.6, as the distribution project's nginx recipe does
// (`if ($http_user_agent ~ "^(docker\/1\.(3|4|5(?!\.[0-9]-dev))|Go ).*$") { return 404; }`).
//
//   plugins:
//     - { path: ./plugins/examples/block-old-docker.ts }
//
// Only types are imported from berth, so the file also runs where berth is installed elsewhere (the
// Docker image); the runtime helper comes as a decorator.
import type { FastifyPluginAsync } from 'fastify'
import type {} from '../../src/index.js' // berth's decorators: request.registryAction, fastify.registryError

const OLD_DOCKER = /^(docker\/1\.(3|4|5(?!\.[0-9]-dev))|Go ).*$/

const blockOldDocker: FastifyPluginAsync = async (fastify) => {
  fastify.addHook('onRequest', async (request) => {
    const agent = request.headers['user-agent'] ?? ''
    if (OLD_DOCKER.test(agent)) {
      request.log.info({ agent }, 'refused an old docker client')
      throw fastify.registryError(404, 'UNSUPPORTED', 'docker clients older than 1.6 are not supported; please upgrade')
    }
  })
}

export default blockOldDocker
