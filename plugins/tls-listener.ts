// Per-connection TLS policy on the listener Fastify created from serverTlsOptions(): no client-initiated
// renegotiation (a CPU-exhaustion vector, and never needed by docker), handshake failures at debug level
// (a "bad certificate" alert is what an untrusted CA looks like from the server). With tls.acme: each new
// certificate swapped in (open connections keep theirs), the orders started once berth listens, and the
// plain listener that answers http-01 challenges and redirects everything else to https.
import fp from 'fastify-plugin'
import http from 'node:http'
import type { TLSSocket } from 'node:tls'
import type { Server } from 'node:https'
import { X509Certificate } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { Gauge, Counter } from 'prom-client'
import { secureContextOptions } from '../src/tls.js'
import type { AcmeCertificates } from '../src/acme.js'

/** The plain listener of tls.acme.httpPort: /.well-known/acme-challenge/TOKEN, else a redirect to https. */
function challengeListener (acme: AcmeCertificates, httpsPort: () => number): http.Server {
  return http.createServer((req, res) => {
    const url = req.url ?? '/'
    const m = /^\/\.well-known\/acme-challenge\/([A-Za-z0-9_-]+)$/.exec(url)
    if (m !== null) {
      const answer = acme.httpAnswer(m[1])
      res.writeHead(answer === undefined ? 404 : 200, { 'content-type': 'text/plain' })
      res.end(answer ?? 'no such challenge')
      return
    }
    const host = (req.headers.host ?? acme.config.domains[0]).replace(/:\d+$/, '')
    const port = httpsPort()
    res.writeHead(301, { location: `https://${host}${port === 443 ? '' : `:${port}`}${url.startsWith('/') ? url : '/'}` })
    res.end()
  })
}

export default fp(async function tlsListener (fastify) {
  if (!fastify.berthConfig.tls) {
    fastify.log.warn('no tls section: berth serves plain HTTP (development only; docker refuses to push without TLS unless the registry is marked insecure)')
    return
  }
  const server = fastify.server as Server
  server.on('secureConnection', (socket: TLSSocket) => { socket.disableRenegotiation() })
  const acme = fastify.acme
  // Reload: new certificates for new connections; open connections keep theirs.
  fastify.onReload({
    name: 'tls',
    async prepare (next) {
      const options = next.tls ? secureContextOptions(next.tls, acme ?? undefined) : null
      return { commit () { if (options !== null) server.setSecureContext(options) } }
    }
  })
  const expiry = new Gauge({
    name: 'berth_certificate_expiry_seconds',
    help: 'When the certificate in force expires (Unix time, seconds).',
    labelNames: ['domain', 'source'],
    registers: [fastify.metrics],
    collect () {
      this.reset()
      const tls = fastify.berthConfig.tls
      if (acme !== null) {
        const s = acme.state()
        this.set({ domain: s.domains[0], source: s.source }, Math.round(new Date(s.notAfter).getTime() / 1000))
      } else if (tls?.cert !== undefined) {
        try {
          const x509 = new X509Certificate(readFileSync(tls.cert))
          this.set({ domain: x509.subject.replace(/^[\s\S]*CN=([^\n]*)[\s\S]*$/, '$1'), source: 'file' }, Math.round(new Date(x509.validTo).getTime() / 1000))
        } catch { /* reported by berth check */ }
      }
    }
  })
  void expiry
  if (acme !== null) {
    // eslint-disable-next-line no-new
    new Counter({
      name: 'berth_certificate_renewals_total',
      help: 'ACME orders by outcome (ok, failed).',
      labelNames: ['outcome'],
      registers: [fastify.metrics],
      collect () { this.reset(); this.inc({ outcome: 'ok' }, acme.renewals.ok); this.inc({ outcome: 'failed' }, acme.renewals.failed) }
    })
    acme.onCertificate = (cert, key) => {
      const tls = fastify.berthConfig.tls
      if (tls !== undefined) server.setSecureContext(secureContextOptions(tls, { cert, key }))
    }
    const port = acme.config.httpPort
    const plain = port === undefined ? null : challengeListener(acme, () => (server.address() as { port: number } | null)?.port ?? fastify.berthConfig.listen.port)
    fastify.decorate('acmeHttpServer', plain)
    fastify.addHook('onListen', async () => {
      if (plain !== null) {
        await new Promise<void>((resolve, reject) => {
          plain.once('error', reject)
          plain.listen(port, fastify.berthConfig.listen.host, () => { plain.off('error', reject); resolve() })
        })
        fastify.log.info({ address: plain.address() }, 'ACME: plain listener for http-01 challenges (everything else is redirected to https)')
      }
      acme.start()
    })
    fastify.addHook('onClose', async () => {
      acme.stop()
      if (plain?.listening === true) await new Promise((resolve) => plain.close(resolve))
    })
  }
  server.on('tlsClientError', (err: Error & { code?: string }, socket: TLSSocket) => {
    fastify.log.debug({ err: { message: err.message, code: err.code }, client: socket.remoteAddress }, 'TLS handshake failed')
  })
}, { name: 'berth-tls-listener', fastify: '5.x', dependencies: ['berth-metrics'], decorators: { fastify: ['berthConfig', 'onReload', 'acme', 'metrics'] } })
