// TLS is not a normal plugin: Fastify takes the https options when the server is created. This pure
// function turns the config into those options; plugins/tls-listener.ts handles what happens per socket.
import { readFileSync } from 'node:fs'
import type { SecureContext, SecureContextOptions, TlsOptions } from 'node:tls'
import type { AcmeCertificates } from './acme.js'
import type { BerthConfig } from './config/schema.js'

/** The context options of the TLS section; `pair` is the certificate in force with tls.acme. */
export function secureContextOptions (tls: NonNullable<BerthConfig['tls']>, pair?: { cert: string, key: string }): SecureContextOptions {
  return {
    cert: pair?.cert ?? readFileSync(tls.cert as string),
    key: pair?.key ?? readFileSync(tls.key as string),
    minVersion: tls.minVersion,
    ciphers: tls.ciphers,
    honorCipherOrder: tls.preferServerCiphers,
    sessionTimeout: Math.max(1, Math.round(tls.sessionTimeout / 1000)),
    ecdhCurve: 'X25519:P-256:P-384',
    // Mutual TLS: the CA whose client certificates are verified (the server options below ask for them).
    ...(tls.clientCa !== undefined ? { ca: readFileSync(tls.clientCa) } : {})
  }
}

/**
 * Options for node:http(s).createServer besides TLS: the header deadline and how often it is checked.
 * (The request and keep-alive timeouts are Fastify's own options, set in src/app.ts.)
 */
export function serverHttpOptions (config: BerthConfig): { headersTimeout: number, connectionsCheckingInterval: number } {
  const header = config.timeouts.header
  return {
    headersTimeout: header,
    // Node checks the header deadline on this interval (30 s by default): check often enough to keep it.
    connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(header / 4)))
  }
}

export function serverTlsOptions (config: BerthConfig, acme: AcmeCertificates | null = null): TlsOptions | null {
  if (!config.tls) return null
  const base = {
    ...serverHttpOptions(config),
    ...secureContextOptions(config.tls, acme ?? undefined),
    // `optional`: a certificate is asked for, and one that does not verify is ignored (socket.authorized
    // false: the client uses a password); `required`: the handshake fails without a valid one.
    ...(config.tls.clientCa !== undefined ? { requestCert: true, rejectUnauthorized: config.tls.clientAuth === 'required' } : {})
  }
  // nginx's shared session cache answers resumptions; Node's tickets do the same without shared state.
  if (acme === null || acme.config.challenge !== 'tls-alpn-01') return { ...base, ALPNProtocols: ['http/1.1'] }
  // tls-alpn-01: the CA's validation offers only ALPN "acme-tls/1" and must get the challenge certificate
  // for the name it asks. In a TLS 1.3 handshake Node calls ALPNCallback before SNICallback, both on the
  // socket: the first marks a validation, the second picks its certificate; every other handshake gets
  // the certificate in force. (In TLS 1.2 the order is the reverse, so a CA must validate over TLS 1.3:
  // Let's Encrypt, step-ca and Pebble, all Go's crypto/tls, do.)
  const validations = new WeakMap<object, SecureContext>()
  return {
    ...base,
    ALPNCallback (this: object, { servername, protocols }: { servername: string, protocols: string[] }) {
      if (protocols.includes('acme-tls/1')) {
        const context = acme.alpnContext(servername)
        if (context !== undefined) {
          validations.set(this, context)
          return 'acme-tls/1'
        }
      }
      return protocols.includes('http/1.1') ? 'http/1.1' : undefined
    },
    SNICallback (this: object, _servername: string, cb: (err: Error | null, ctx?: SecureContext) => void) {
      cb(null, validations.get(this))
    }
  } as TlsOptions
}
