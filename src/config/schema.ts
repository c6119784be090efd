// The one source of truth for berth's configuration: validation (TypeBox's Value.Errors), the TypeScript
// types (Static / StaticDecode) and the configuration reference in docs/configuration.md (scripts/config-docs.ts) all come from here.
import { Type, type Static, type StaticDecode, type TSchema, type TInteger, type TLiteral, type TString, type TUnion } from '@sinclair/typebox'
import { DURATION_PATTERN, SIZE_PATTERN, parseDuration, parseSize } from './units.js'

// Each leaf may carry `expected`, the phrase that config errors print ("expected a duration ...").
/** A number, or a string with a unit, decoded to a number (bytes or milliseconds). */
function WithUnit (number: TInteger | TLiteral<0>, pattern: string, parse: (v: number | string) => number, expected: string) {
  return (def: string, description: string) => Type.Transform(Type.Union([
    number,
    Type.String({ pattern })
  ], { default: def, description, expected }) as TUnion<[TInteger, TString]>)
    .Decode((v) => parse(v))
    .Encode((v) => v)
}

const Size = WithUnit(Type.Integer({ minimum: 0 }), SIZE_PATTERN, parseSize, 'a size: bytes, or a number with k, m or g (e.g. 300m, 1g)')
const Duration = WithUnit(Type.Literal(0), DURATION_PATTERN, parseDuration, 'a duration with its unit: ms, s, m, h or d (e.g. 500ms, 60s, 15m); a bare number other than 0 is refused (nginx would read seconds)')

function Section<T extends Record<string, TSchema>> (props: T, description: string, required = false) {
  return Type.Object(props, { additionalProperties: false, description, ...(required ? {} : { default: {} }) })
}

const Port = (def: number, description: string) => Type.Integer({ default: def, minimum: 0, maximum: 65535, description, expected: 'a port number from 0 to 65535' })

const FilePath = (description: string) => Type.String({ minLength: 1, description, expected: 'a file path' })

// ECDHE key exchange with AEAD ciphers only (no static RSA, no CBC), plus the TLS 1.3 suites.
export const DEFAULT_CIPHERS = [
  'TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256',
  'ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384', 'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305', 'ECDHE-RSA-CHACHA20-POLY1305'
].join(':')

const Action = Type.Union(['pull', 'push', 'delete', 'catalog'].map((a) => Type.Literal(a)), { expected: 'one of pull, push, delete, catalog' })
const Actions = Type.Array(Action, { minItems: 1, description: 'Actions allowed: `pull` (GET/HEAD), `push` (POST/PUT/PATCH), `delete` (DELETE), `catalog` (/v2/_catalog).', expected: 'a list of pull, push, delete, catalog' })
const Repositories = Type.Array(Type.String({ pattern: '^[a-z0-9._/*?-]+$', expected: 'a repository glob like team-a/** (lower-case letters, digits, . _ - / and the wildcards * ** ?)' }),
  { minItems: 1, description: 'Repository globs: `*` within one path segment, `**` across segments, `?` one character.', expected: 'a list of repository globs' })
const Names = (what: string) => Type.Array(Type.String({ minLength: 1 }), { description: what, expected: 'a list of names' })

export const ConfigSchema = Type.Object({
  listen: Section({
    host: Type.String({ default: '0.0.0.0', minLength: 1, description: 'Address to listen on (nginx `listen`).' }),
    port: Port(8443, 'TCP port; 0 picks a free one.'),
    publicHost: Type.Optional(Type.String({ pattern: '^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\\[[0-9A-Fa-f:.]+\\])(?::\\d{1,5})?$', description: 'The `host[:port]` clients use to reach berth. Sent to the registry as Host for a request that has none (HTTP/1.0); default: the address and port the client connected to. The registry builds upload URLs from it.', expected: 'a host name or address with an optional port, like registry.example.com or registry.example.com:8443' }))
  }, 'Where berth accepts client connections.'),
  workers: Type.Union([Type.Literal('auto'), Type.Integer({ minimum: 1, maximum: 256 })], { default: 1, description: 'Processes serving requests (nginx `worker_processes`): `auto` = one per CPU core. With more than one, a primary process shares the listening sockets among them, replaces a worker that dies, passes reload and drain to all, and sums their metrics on the admin listener. Each worker keeps its own part of `cache` (`dir/worker-N`, `maxSize`/N).', expected: 'auto or a whole number from 1 to 256' }),
  trustedProxies: Type.Array(Type.String({ minLength: 1 }), { default: [], description: 'Addresses or CIDR blocks of load balancers in front of berth (nginx `set_real_ip_from`). Only from these peers are `X-Forwarded-For` (the client address for throttling, logs and the registry), `X-Forwarded-Proto`, `X-Forwarded-Host` and `Forwarded` believed and passed on; from every other peer they are dropped and berth sets its own.', expected: 'a list of addresses or CIDR blocks like 10.0.0.0/8' }),
  tls: Type.Optional(Section({
    cert: Type.Optional(FilePath('PEM certificate chain (nginx `ssl_certificate`). Either `cert` and `key`, or `acme`.')),
    key: Type.Optional(FilePath('PEM private key (nginx `ssl_certificate_key`).')),
    acme: Type.Optional(Section({
      directory: Type.String({ pattern: '^https://', description: 'The ACME CA\'s directory URL (Let\'s Encrypt: https://acme-v02.api.letsencrypt.org/directory; staging first: https://acme-staging-v02.api.letsencrypt.org/directory).', expected: 'an https:// URL' }),
      email: Type.String({ pattern: '^[^@\\s]+@[^@\\s]+$', description: 'Contact address of the ACME account (expiry notices).', expected: 'an e-mail address' }),
      domains: Type.Array(Type.String({ pattern: '^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(\\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$', expected: 'a lower-case DNS name' }), { minItems: 1, description: 'Names of the certificate (the first is its subject); each must reach this berth.', expected: 'a list of DNS names' }),
      challenge: Type.Union([Type.Literal('tls-alpn-01'), Type.Literal('http-01')], { default: 'tls-alpn-01', description: '`tls-alpn-01`: answered on berth\'s own TLS listener (the CA must reach it on port 443); `http-01`: answered on the plain listener `httpPort` (the CA must reach it on port 80).', expected: 'tls-alpn-01 or http-01' }),
      httpPort: Type.Optional(Type.Integer({ minimum: 0, maximum: 65535, description: 'A plain HTTP listener (on `listen.host`) that answers `/.well-known/acme-challenge/` and redirects everything else to https. Needed for http-01 (port 80 for a public CA).', expected: 'a port number from 0 to 65535' })),
      storage: Type.String({ minLength: 1, description: 'Directory of the account key and the certificates (files 0600), shared by replicas; relative to the config file. A restart reuses what is there.', expected: 'a directory path' }),
      caBundle: Type.Optional(FilePath('PEM CA that signed the ACME directory\'s own HTTPS certificate (a private CA such as step-ca, or Pebble); default: the system CAs.')),
      eab: Type.Optional(Type.Object({
        kid: Type.String({ minLength: 1, description: 'External account binding key id.' }),
        hmacKey: Type.String({ minLength: 1, description: 'External account binding HMAC key (base64url).' })
      }, { additionalProperties: false, description: 'External account binding, for CAs that require one (ZeroSSL, some step-ca setups).' })),
      renewBefore: Duration('30d', 'Renew when the certificate has less than this left.'),
      checkInterval: Duration('12h', 'How often berth looks at the stored certificate (picking up one another replica renewed) and whether renewal is due; also the longest wait between two attempts after a failure (retries back off from 2 s).')
    }, 'Certificates from an ACME CA (Let\'s Encrypt, ZeroSSL, step-ca), instead of `cert` and `key`: obtained at start (berth serves a temporary self-signed certificate until then), renewed in the background and swapped in without dropping a connection.', true)),
    clientCa: Type.Optional(FilePath('PEM CA whose client certificates berth asks for (mutual TLS); with `auth.clientCertificate` a certificate names the user.')),
    clientAuth: Type.Union([Type.Literal('optional'), Type.Literal('required')], { default: 'optional', description: 'With `clientCa`: `optional` (clients without a certificate use a password) or `required` (the handshake fails without a valid one).', expected: 'optional or required' }),
    minVersion: Type.Union([Type.Literal('TLSv1.2'), Type.Literal('TLSv1.3')], { default: 'TLSv1.2', description: 'Oldest TLS version accepted.', expected: 'TLSv1.2 or TLSv1.3' }),
    ciphers: Type.String({ default: DEFAULT_CIPHERS, minLength: 1, description: 'OpenSSL cipher string (nginx `ssl_ciphers`). Default: ECDHE with AEAD only, plus TLS 1.3.' }),
    preferServerCiphers: Type.Boolean({ default: true, description: 'nginx `ssl_prefer_server_ciphers`.' }),
    sessionTimeout: Duration('5m', 'TLS session lifetime (nginx `ssl_session_timeout`).')
  }, 'TLS for the client side: `cert` and `key`, or `acme`. Omit it for plain HTTP (development only; berth warns).', true)),
  upstream: Section({
    servers: Type.Array(Type.Object({
      url: Type.String({ minLength: 1, description: 'Registry base URL, http:// or https://, no path.', expected: 'a URL like https://127.0.0.1:5000' }),
      weight: Type.Integer({ default: 1, minimum: 1, description: 'Share of requests (nginx `weight`).', expected: 'a whole number >= 1' }),
      maxFails: Type.Integer({ default: 1, minimum: 0, description: 'Connection errors or timeouts within `failTimeout` that take the server out of rotation for `failTimeout` (nginx `max_fails`); 0 = never.', expected: 'a whole number >= 0' }),
      failTimeout: Duration('10s', 'nginx `fail_timeout`.'),
      backup: Type.Boolean({ default: false, description: 'Gets traffic only while every primary is down (nginx `backup`).' })
    }, { additionalProperties: false }), { minItems: 1, description: 'The registries behind berth (nginx `upstream { server … }`). They must share storage and `http.secret`.', expected: 'a list of at least one { url, weight }' }),
    balance: Type.Union([Type.Literal('round_robin'), Type.Literal('least_conn')], { default: 'round_robin', description: '`round_robin`: nginx\'s smooth weighted round robin; `least_conn`: fewest active requests per weight.', expected: 'round_robin or least_conn' }),
    healthCheck: Type.Optional(Section({
      type: Type.Union([Type.Literal('tcp'), Type.Literal('http')], { default: 'tcp', description: '`tcp`: a connection opens; `http`: a GET answers with a status in `expect` (over TLS for https servers, verified).', expected: 'tcp or http' }),
      interval: Duration('5s', 'Time between probes of one server (they never overlap).'),
      rise: Type.Integer({ default: 2, minimum: 1, description: 'Consecutive successes that mark a server up.', expected: 'a whole number >= 1' }),
      fall: Type.Integer({ default: 5, minimum: 1, description: 'Consecutive failures that mark a server down.', expected: 'a whole number >= 1' }),
      timeout: Duration('1s', 'Time a probe may take.'),
      port: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535, description: 'Port to probe; default: the server\'s own.', expected: 'a port number from 1 to 65535' })),
      path: Type.String({ default: '/v2/', pattern: '^/', description: 'http probes: the path requested.', expected: 'a path starting with /' }),
      expect: Type.Array(Type.Integer({ minimum: 100, maximum: 599 }), { default: [200, 401], minItems: 1, description: 'http probes: statuses that count as healthy.', expected: 'a list of HTTP statuses' }),
      initialState: Type.Union([Type.Literal('up'), Type.Literal('down')], { default: 'up', description: 'State before the first probes decide (Tengine `default_down` = `down`).', expected: 'up or down' })
    }, 'Active health probes (Tengine\'s `check interval rise fall timeout type port`). Absent: no probes; only passive failures take a server out.', true)),
    nextUpstream: Section({
      on: Type.Array(Type.Union(['error', 'timeout', 'invalid_header', 'http_500', 'http_502', 'http_503', 'http_504', 'http_403', 'http_404', 'http_429'].map((c) => Type.Literal(c))), {
        default: ['error', 'timeout', 'invalid_header', 'http_500', 'http_502', 'http_503', 'http_504'],
        description: 'When a request goes to the next server (nginx `proxy_next_upstream`); [] = never.',
        expected: 'a list of error, timeout, invalid_header, http_500, http_502, http_503, http_504, http_403, http_404, http_429'
      }),
      tries: Type.Integer({ default: 0, minimum: 0, description: 'Most servers tried per request; 0 = every server once (nginx `proxy_next_upstream_tries`).', expected: 'a whole number >= 0' }),
      timeout: Duration('0', 'Time budget for all tries of one request; 0 = none (nginx `proxy_next_upstream_timeout`).'),
      nonIdempotent: Type.Boolean({ default: false, description: 'Also retry POST, PATCH and PUT after they were sent (nginx `non_idempotent`). A body that started streaming is never replayed.' })
    }, 'Retrying a request on the next server, only while nothing was sent to the client and the request can be replayed.'),
    tls: Section({
      ca: Type.Optional(FilePath('PEM CA bundle that signed the upstream certificates (default: the system CAs).')),
      verify: Type.Boolean({ default: true, description: 'Verify the upstream certificate and name. Turn off only for testing.' })
    }, 'TLS toward https:// upstreams.'),
    timeouts: Section({
      connect: Duration('5s', 'Time to open a connection to an upstream (nginx `proxy_connect_timeout`).'),
      idle: Duration('900s', 'A transfer ends when no byte has moved either way, on the client or the upstream connection, for this long (nginx `proxy_read_timeout`, `proxy_send_timeout`, `send_timeout`, `client_body_timeout`). A slow answer to a final PUT is fine within it.')
    }, 'Upstream timeouts. There is no whole-request deadline.')
  }, 'Upstream registries.', true),
  auth: Type.Optional(Section({
    realm: Type.String({ default: 'Registry', pattern: '^[^"\\\\\\x00-\\x1f\\x7f]*$', description: 'The realm of the Basic challenge (nginx `auth_basic`).', expected: 'text without quotes, backslashes or control characters' }),
    htpasswd: Type.Optional(FilePath('Apache htpasswd file (nginx `auth_basic_user_file`): apr1, bcrypt, SHA-1, SHA-256/512-crypt. Watched: changes apply within 2 s. Optional when users come from `ldap` or client certificates.')),
    keys: Type.Optional(FilePath('Access keys file (`berth key create`, `list`, `revoke`): each key\'s hash, user, scope and expiry. Watched: a revocation applies within 2 s. Default: `keys.json` beside the htpasswd file (or the configuration file); absent file = no keys.')),
    ldap: Type.Optional(Section({
      url: Type.String({ pattern: '^ldaps?://', description: 'Directory server, `ldap://` or `ldaps://` (host:port).', expected: 'an ldap:// or ldaps:// URL' }),
      bindDn: Type.String({ minLength: 1, description: 'The service account that searches for users.', expected: 'a DN like cn=berth,dc=example,dc=org' }),
      bindPassword: Type.Optional(Type.String({ description: 'Its password (prefer `bindPasswordFile`).' })),
      bindPasswordFile: Type.Optional(FilePath('A file holding its password (a Kubernetes or Docker secret); relative to the config file.')),
      userBase: Type.String({ minLength: 1, description: 'Where users are searched (subtree).', expected: 'a DN like ou=people,dc=example,dc=org' }),
      userFilter: Type.String({ default: '(uid={user})', pattern: '\\{user\\}', description: 'Search filter; `{user}` is the login name, escaped (RFC 4515). Active Directory: `(sAMAccountName={user})`.', expected: 'an LDAP filter containing {user}' }),
      groupAttribute: Type.String({ default: 'memberOf', minLength: 1, description: 'Attribute of the user entry listing their groups; each value\'s first RDN (`cn=devs,ou=groups,…` → `devs`) is a group name for `access` rules.' }),
      tls: Section({
        ca: Type.Optional(FilePath('PEM CA of the directory\'s certificate (ldaps://); default: the system CAs.'))
      }, 'TLS toward the directory (always verified).'),
      timeout: Duration('5s', 'Time the directory may take to connect or answer; past it, logins get 503.'),
      cacheFor: Duration('5m', 'How long a verified bind is believed without asking the directory again (a password changed there is seen after this at most).')
    }, 'Users from an LDAP directory: a login searches the user\'s entry as `bindDn`, then binds as it with the password. Users of the htpasswd file are checked there first. A directory that cannot answer fails closed (503).', true)),
    clientCertificate: Type.Optional(Section({
      user: Type.Union([Type.Literal('cn'), Type.Literal('san-email'), Type.Literal('san-dns')], { default: 'cn', description: 'Which field of a client certificate (signed by `tls.clientCa`) names the user: the subject\'s CN, the first e-mail or the first DNS name of its subject alternative names.', expected: 'cn, san-email or san-dns' })
    }, 'Mutual TLS: a client presenting a certificate from `tls.clientCa` and no credentials is that user, for the access rules.', true)),
    token: Type.Optional(Section({
      issuer: Type.String({ default: 'berth', minLength: 1, description: 'The tokens\' `iss`; the registry\'s `auth.token.issuer`.' }),
      service: Type.String({ default: 'registry', minLength: 1, description: 'The tokens\' audience; the registry\'s `auth.token.service`.' }),
      key: FilePath('PEM private key that signs the tokens (EC P-256 or RSA; `berth token-cert` makes one); relative to the config file.'),
      cert: FilePath('Its PEM certificate: the registry\'s `auth.token.rootcertbundle`.'),
      ttl: Duration('5m', 'Token lifetime.'),
      realm: Type.Optional(Type.String({ pattern: '^https?://', description: 'The token URL clients are sent to; default: `https://` + the host the client used (or `listen.publicHost`) + `/token`. Set the registry\'s `auth.token.realm` to the same.', expected: 'a URL like https://registry.example.com/token' }))
    }, 'Token mode: berth is the registry\'s token server (`GET`/`POST /token`) and the registry checks every request itself. See docs/identity.md.', true)),
    groups: Type.Record(Type.String(), Names('Members.'), { default: {}, description: 'Named groups of users, for `access` rules.', expected: 'a map of group name to a list of user names' }),
    access: Type.Optional(Type.Array(Type.Object({
      users: Type.Optional(Names('Users the rule applies to.')),
      groups: Type.Optional(Names('Groups the rule applies to.')),
      repositories: Repositories,
      actions: Actions
    }, { additionalProperties: false }), { description: 'Who may do what where; a request is allowed when any rule allows it. Absent: every authenticated user may do everything (as nginx).', expected: 'a list of { users, groups, repositories, actions }' })),
    anonymous: Type.Optional(Type.Object({ repositories: Repositories, actions: Actions }, { additionalProperties: false, description: 'What clients without credentials may do (e.g. pull `public/**`). `GET /v2/` always needs credentials, so `docker login` checks them.' })),
    cacheSize: Type.Integer({ default: 10_000, minimum: 0, description: 'Verified credentials remembered (keyed by a SHA-256 of a per-process secret, user and password; never the password); 0 = no cache.', expected: 'a whole number >= 0' }),
    throttle: Section({
      failures: Type.Integer({ default: 10, minimum: 1, description: 'Failed logins from one client address within `window` that trigger a block.', expected: 'a whole number >= 1' }),
      userFailures: Type.Integer({ default: 50, minimum: 0, description: 'Failed logins for one user name, from any address, within `window` that block logins of that name for `block` (a guesser spread over many addresses); 0 = off. A name that is blocked is blocked for its owner too: keep it well above what a mistyped password makes.', expected: 'a whole number >= 0' }),
      window: Duration('1m', 'Window in which failures are counted.'),
      block: Duration('5m', 'How long a blocked address gets 429, without any password check.')
    }, 'Brute-force throttling per client address and per user name (shared by every replica with `cluster`).')
  }, 'HTTP Basic authentication and per-repository access. Omit it for an open proxy (as nginx without `auth_basic`).', true)),
  timeouts: Section({
    header: Duration('10s', 'A client must send its request headers within this (nginx `client_header_timeout`); slowloris connections are closed.'),
    clientIdle: Duration('60s', 'An upload whose body stops moving, or a download the client stops reading, for this long is ended and its upstream request destroyed (nginx `client_body_timeout`, `send_timeout`).')
  }, 'Client-side timeouts. The upstream side has `upstream.timeouts`.'),
  limits: Section({
    maxBodySize: Size('300m', 'Largest request body (nginx `client_max_body_size`); 0 = no limit.')
  }, 'Request limits.'),
  cache: Type.Optional(Section({
    dir: Type.String({ minLength: 1, description: 'Directory of the cached blobs (one file per digest); relative to the config file. Created if missing.', expected: 'a directory path' }),
    maxSize: Size('20g', 'Total size of the cached blobs; the least recently used go first when it is reached.'),
    confirmFor: Duration('5m', 'How long the upstream\'s word that a repository holds a blob is trusted; after that a cached copy is served only after a new HEAD says so. A delete through berth forgets the repository at once; this bounds how long a delete made on the registry directly (or its garbage collection) can go unseen.')
  }, 'Edge cache for blobs (immutable, content-addressed): a download fills it as it streams, kept only if the whole matches its digest; a copy is served (with Range) only for a repository the upstream confirmed holds that blob, after the access rules. Absent: no cache.', true)),
  cluster: Type.Optional(Section({
    redis: Section({
      url: Type.String({ pattern: '^rediss?://', description: 'Redis or Valkey shared by every replica: `redis://[:password@]host:6379/0`, or `rediss://` for TLS.', expected: 'a redis:// or rediss:// URL' }),
      tls: Section({
        ca: Type.Optional(FilePath('PEM CA of Redis\'s certificate (rediss://); default: the system CAs.'))
      }, 'TLS toward Redis (verified).'),
      keyPrefix: Type.String({ default: 'berth:', minLength: 1, description: 'Prefix of every key and channel berth uses (several berth clusters may share one Redis).' })
    }, 'The shared store.', true),
    placement: Type.Optional(Section({
      listen: Section({
        host: Type.String({ default: '0.0.0.0', minLength: 1, description: 'Address of the internal listener (peers only: keep it off the public network).' }),
        port: Port(8444, 'Its port.')
      }, 'The internal listener other replicas fetch blobs from (TLS with berth\'s certificate; every request must carry a peer signature).'),
      advertise: Type.Optional(Type.String({ pattern: '^https://', description: 'How the other replicas reach this one\'s internal listener, e.g. https://10.0.0.5:8444. Unique per replica: it is the replica\'s name in the hashing. Default: https:// + this host\'s first non-loopback IPv4 address (a pod\'s IP) + the internal port.', expected: 'an https:// URL' })),
      servername: Type.Optional(Type.String({ minLength: 1, description: 'The name in berth\'s certificate that peers verify when they connect to an address (a pod IP) the certificate does not name; default: the host of `listen.publicHost`, else the address itself.' })),
      secret: Type.Optional(Type.String({ minLength: 16, description: 'Shared by every replica: signs peer requests (prefer `secretFile`).', expected: 'at least 16 characters' })),
      secretFile: Type.Optional(FilePath('A file holding the shared secret; relative to the config file.')),
      peers: Type.Optional(Type.Array(Type.String({ pattern: '^https://' }), { description: 'Every replica\'s `advertise` URL (this one included). Absent: members announce themselves in Redis every 2 s (gone after 6 s).', expected: 'a list of https:// URLs' }))
    }, 'Blob cache placement: each layer has one owner replica (rendezvous hashing); a replica that misses a layer it does not own fetches it from the owner\'s cache, which fills it from the registry once, instead of from the registry (the registries stay behind the owner, for when it is down). The access rules still run on the replica the client reached. Needs `cache` and `tls`. The internal listener\'s certificate must verify with `upstream.tls`.', true)),
    failOpen: Type.Boolean({ default: true, description: 'Redis unreachable: `true` keeps serving, each replica counting failed logins on its own (logged, and `berth_cluster_redis_up` 0); `false` answers logins with 503 until it is back. Either way the counters resume when it is back, without a restart.' })
  }, 'Replicas acting as one: failed logins counted and lockouts applied across every replica, access key revocations everywhere within a second (`berth key revoke` publishes them). The credential cache stays local.', true)),
  admin: Type.Optional(Section({
    host: Type.String({ default: '127.0.0.1', minLength: 1, description: 'Admin listener address (plain HTTP: keep it private).' }),
    port: Port(9090, 'Admin listener port; 0 picks a free one.')
  }, 'The admin listener: `/healthz`, `/readyz`, `/upstreams` (JSON), `/status` (HTML). Absent: none.', true)),
  pressure: Section({
    maxEventLoopDelay: Duration('1s', 'Event loop delay above which new requests get 503 with `Retry-After`; 0 = off.'),
    maxHeapUsed: Size('0', 'V8 heap above which new requests get 503; 0 = off.'),
    maxRss: Size('0', 'Resident set above which new requests get 503; 0 = off.'),
    retryAfter: Duration('10s', 'The `Retry-After` of those 503s.')
  }, 'Load shedding (@fastify/under-pressure): an overloaded berth refuses new requests instead of collapsing. The admin listener keeps answering.'),
  shutdown: Section({
    drainTimeout: Duration('30s', 'On SIGTERM/SIGINT: how long requests in flight (uploads included) may take to finish before berth exits anyway.')
  }, 'Graceful shutdown.'),
  pidFile: Type.Optional(FilePath('Where berth writes its process id at start (removed at exit), for `berth reload`/`berth stop` without an admin listener, systemd\'s `PIDFile=` and logrotate (nginx `pid`); relative to the config file. Absent: none.')),
  plugins: Type.Array(Type.Object({
    path: FilePath('A module (.ts or .js) whose default export is a Fastify plugin; relative to the config file.'),
    options: Type.Record(Type.String(), Type.Unknown(), { default: {}, description: 'Passed to the plugin as its options.', expected: 'a map of options' })
  }, { additionalProperties: false }), { default: [], description: 'Custom plugins, loaded in order, each encapsulated, after auth and before the proxy. See "Custom plugins".', expected: 'a list of { path, options }' }),
  log: Section({
    access: Type.String({ default: '-', minLength: 1, description: 'Access log file; `-` = stdout. Lines are gathered up to 64 KiB and written at least once a second (nginx `buffer=64k flush=1s`).' }),
    error: Type.String({ default: '-', minLength: 1, description: 'Error log file; `-` = stderr.' }),
    level: Type.Union(['debug', 'info', 'warn', 'error'].map((l) => Type.Literal(l)), { default: 'info', description: 'Error log level.', expected: 'one of debug, info, warn, error' }),
    format: Type.Union([Type.Literal('combined'), Type.Literal('json')], { default: 'combined', description: 'Access log format: `combined` (nginx `main` plus request time and upstream) or `json` (`requestTime` in seconds, to the millisecond).', expected: 'combined or json' }),
    errorFormat: Type.Union([Type.Literal('auto'), Type.Literal('pretty'), Type.Literal('json')], { default: 'auto', description: 'Error log format: `json` (one pino object per line), `pretty` (one readable line per event, pino-pretty), `auto` = pretty when the error log is a terminal, else json.', expected: 'auto, pretty or json' })
  }, 'Logs.')
}, { additionalProperties: false })

/** The configuration as written in YAML (sizes and durations may be strings). */
export type BerthConfigInput = Static<typeof ConfigSchema>
/** The configuration after validation: defaults filled, sizes in bytes, durations in ms, paths absolute. */
export type BerthConfig = StaticDecode<typeof ConfigSchema> & { readonly file: string }
