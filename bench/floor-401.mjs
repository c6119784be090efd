// What the 401 path costs below berth, for the benchmark's 401 section: a bare Node.js `https` server
// (`node`) and a bare Fastify server (`fastify`) whose one hook refuses every request the way berth's hooks
// do (an error passed to `done`, answered by the error handler), each with berth's answer to a request
// without credentials (the same status, headers and body). Nothing else runs in them.
//   node bench/floor-401.mjs node|fastify CERT KEY PORT
import { readFileSync } from 'node:fs'
import { createServer } from 'node:https'

const [kind, cert, key, port] = process.argv.slice(2)
const tls = { cert: readFileSync(cert), key: readFileSync(key) }
const body = JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'authentication required', detail: null }] })
const headers = {
  'content-type': 'application/json; charset=utf-8',
  'docker-distribution-api-version': 'registry/2.0',
  'www-authenticate': 'Basic realm="Registry"',
  'content-length': Buffer.byteLength(body)
}

if (kind === 'node') {
  createServer(tls, (_req, res) => { res.writeHead(401, headers); res.end(body) }).listen(Number(port), '127.0.0.1')
} else if (kind === 'fastify') {
  const { default: Fastify } = await import('fastify')
  const app = Fastify({ https: tls, keepAliveTimeout: 75_000 })
  app.setErrorHandler((_err, _request, reply) => { reply.code(401).headers(headers).send(body) })
  // One error made once: berth's errors carry no stack trace, whose capture would cost more than the rest.
  const unauthorized = new Error('authentication required')
  app.addHook('onRequest', (_request, _reply, done) => { done(unauthorized) })
  app.get('/*', (_request, reply) => { reply.send('') })
  await app.listen({ port: Number(port), host: '127.0.0.1' })
} else {
  throw new Error(`${kind}: node or fastify`)
}
process.on('SIGTERM', () => process.exit(0))
