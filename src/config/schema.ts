// The one source of truth for berth's configuration: validation (TypeBox's Value.Errors), the TypeScript
// types (Static / StaticDecode) and the README reference (scripts/config-docs.ts) all come from here.
import { Type, type Static, type StaticDecode, type TSchema } from '@sinclair/typebox'
import { DURATION_PATTERN, SIZE_PATTERN, parseDuration, parseSize } from './units.js'

// Each leaf may carry `expected`, the phrase that config errors print ("expected a duration ...").
function Size (def: string, description: string) {
  return Type.Transform(Type.Union([
    Type.Integer({ minimum: 0 }),
    Type.String({ pattern: SIZE_PATTERN })
  ], { default: def, description, expected: 'a size: bytes, or a number with k, m or g (e.g. 300m, 1g)' }))
    .Decode((v) => parseSize(v))
    .Encode((v) => v)
}

function Duration (def: string, description: string) {
  return Type.Transform(Type.Union([
    Type.Integer({ minimum: 0 }),
    Type.String({ pattern: DURATION_PATTERN })
  ], { default: def, description, expected: 'a duration: milliseconds, or a number with ms, s, m or h (e.g. 5s, 15m)' }))
    .Decode((v) => parseDuration(v))
    .Encode((v) => v)
}

function Section<T extends Record<string, TSchema>> (props: T, description: string, required = false) {
  return Type.Object(props, { additionalProperties: false, description, ...(required ? {} : { default: {} }) })
}

const FilePath = (description: string) => Type.String({ minLength: 1, description, expected: 'a file path' })

// ECDHE key exchange with AEAD ciphers only (no static RSA, no CBC), plus the TLS 1.3 suites.
export const DEFAULT_CIPHERS = [
  'TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256',
  'ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384', 'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305', 'ECDHE-RSA-CHACHA20-POLY1305'
].join(':')

export const ConfigSchema = Type.Object({
  listen: Section({
    host: Type.String({ default: '0.0.0.0', minLength: 1, description: 'Address to listen on (nginx `listen`).' }),
    port: Type.Integer({ default: 8443, minimum: 0, maximum: 65535, description: 'TCP port; 0 picks a free one.', expected: 'a port number from 0 to 65535' })
  }, 'Where berth accepts client connections.'),
  tls: Type.Optional(Section({
    cert: FilePath('PEM certificate chain (nginx `ssl_certificate`).'),
    key: FilePath('PEM private key (nginx `ssl_certificate_key`).'),
    minVersion: Type.Union([Type.Literal('TLSv1.2'), Type.Literal('TLSv1.3')], { default: 'TLSv1.2', description: 'Oldest TLS version accepted.', expected: 'TLSv1.2 or TLSv1.3' }),
    ciphers: Type.String({ default: DEFAULT_CIPHERS, minLength: 1, description: 'OpenSSL cipher string (nginx `ssl_ciphers`). Default: ECDHE with AEAD only, plus TLS 1.3.' }),
    preferServerCiphers: Type.Boolean({ default: true, description: 'nginx `ssl_prefer_server_ciphers`.' }),
    sessionTimeout: Duration('5m', 'TLS session lifetime (nginx `ssl_session_timeout`).')
  }, 'TLS for the client side. Omit it for plain HTTP (development only; berth warns).', true)),
  upstream: Section({
    servers: Type.Array(Type.Object({
      url: Type.String({ minLength: 1, description: 'Registry base URL, http:// or https://, no path.', expected: 'a URL like https://127.0.0.1:5000' }),
      weight: Type.Integer({ default: 1, minimum: 1, description: 'Share of requests (nginx `weight`).', expected: 'a whole number >= 1' })
    }, { additionalProperties: false }), { minItems: 1, description: 'The registries behind berth (nginx `upstream { server … }`).', expected: 'a list of at least one { url, weight }' }),
    tls: Section({
      ca: Type.Optional(FilePath('PEM CA bundle that signed the upstream certificates (default: the system CAs).')),
      verify: Type.Boolean({ default: true, description: 'Verify the upstream certificate and name. Turn off only for testing.' })
    }, 'TLS toward https:// upstreams.'),
    timeouts: Section({
      connect: Duration('5s', 'Time to open a connection to an upstream (nginx `proxy_connect_timeout`).'),
      idle: Duration('900s', 'A transfer ends when no byte has moved either way, on the client or the upstream connection, for this long (nginx `proxy_read_timeout`, `proxy_send_timeout`, `send_timeout`, `client_body_timeout`). A slow answer to a final PUT is fine within it.')
    }, 'Upstream timeouts. There is no whole-request deadline.')
  }, 'Upstream registries.', true),
  limits: Section({
    maxBodySize: Size('300m', 'Largest request body (nginx `client_max_body_size`); 0 = no limit.')
  }, 'Request limits.'),
  log: Section({
    access: Type.String({ default: '-', minLength: 1, description: 'Access log file; `-` = stdout.' }),
    error: Type.String({ default: '-', minLength: 1, description: 'Error log file; `-` = stderr.' }),
    level: Type.Union(['debug', 'info', 'warn', 'error'].map((l) => Type.Literal(l)), { default: 'info', description: 'Error log level.', expected: 'one of debug, info, warn, error' }),
    format: Type.Union([Type.Literal('combined'), Type.Literal('json')], { default: 'combined', description: 'Access log format: `combined` (nginx `main` plus request time and upstream) or `json`.', expected: 'combined or json' })
  }, 'Logs.')
}, { additionalProperties: false })

/** The configuration as written in YAML (sizes and durations may be strings). */
export type BerthConfigInput = Static<typeof ConfigSchema>
/** The configuration after validation: defaults filled, sizes in bytes, durations in ms, paths absolute. */
export type BerthConfig = StaticDecode<typeof ConfigSchema> & { readonly file: string }
