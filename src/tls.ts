// TLS is not a normal plugin: Fastify takes the https options when the server is created. This pure
// function turns the config into those options; plugins/tls-listener.ts handles what happens per socket.
import { readFileSync } from 'node:fs'
import type { SecureContextOptions, TlsOptions } from 'node:tls'
import type { BerthConfig } from './config/schema.js'

export function secureContextOptions (tls: NonNullable<BerthConfig['tls']>): SecureContextOptions {
  return {
    cert: readFileSync(tls.cert),
    key: readFileSync(tls.key),
    minVersion: tls.minVersion,
    ciphers: tls.ciphers,
    honorCipherOrder: tls.preferServerCiphers,
    sessionTimeout: Math.max(1, Math.round(tls.sessionTimeout / 1000)),
    ecdhCurve: 'X25519:P-256:P-384'
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

export function serverTlsOptions (config: BerthConfig): TlsOptions | null {
  if (!config.tls) return null
  return {
    ...serverHttpOptions(config),
    ...secureContextOptions(config.tls),
    // nginx's shared session cache answers resumptions; Node's tickets do the same without shared state.
    ALPNProtocols: ['http/1.1']
  }
}
