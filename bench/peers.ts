// The proxies an operator would put in front of a registry instead of berth, each configured as close
// to berth's setup as it allows: TLS with the same certificate, HTTP Basic auth against the same users,
// one upstream registry over verified TLS, bodies streamed both ways, a 300 MB body limit.
//   nginx        as operators set it up in front of a registry (docs/nginx.md): the Tengine-only `check`
//                line left out, `proxy_request_buffering off` and `proxy_http_version 1.1` added so that
//                it streams, `worker_processes auto` as Debian's nginx.conf ships it
//   nginx-tuned  the same, as its experts would tune it: upstream keepalive (`keepalive 32` with
//                `proxy_set_header Connection ""`), a buffered access log, a larger TLS session cache, and
//                the upstream certificate verified as berth does (the usual setup skips that)
//   caddy        Caddy 2 (Debian's 2.6): `basicauth` (bcrypt only; it remembers verified passwords, as
//                berth does), `reverse_proxy` with `flush_interval -1`, the upstream verified
//   haproxy      HAProxy (Debian's 2.6): a `userlist` (crypt(3): bcrypt here, apr1 is not supported),
//                `http-request auth`, a 413 above 300 MB, `nbthread` = the cores, the upstream verified
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { spawnSync } from 'node:child_process'
import { need, runNginx, runPeer, type Cleanups } from './lib.js'

/** `users`: the kinds of htpasswd users the peer can verify (Caddy and HAProxy take bcrypt only). */
export interface Peer { name: string, port: number, pid: number, version: string, users: Array<'apr1' | 'bcrypt'> }

export interface PeerOptions { port: number, upstreamPort: number, cert: string, key: string, htpasswd: string, ca: string }

/** user -> hash of the htpasswd file's bcrypt users. */
function bcryptUsers (htpasswd: string): Array<[string, string]> {
  return readFileSync(htpasswd, 'utf8').split('\n').map((l) => l.split(':') as [string, string]).filter(([, h]) => h?.startsWith('$2'))
}

/** nginx's blob cache, the usual recipe: blobs by their digest path, one fetch per blob (proxy_cache_lock). */
const NGINX_BLOB_CACHE = (prefix: string, o: PeerOptions) => `
    location ~ "^/v2/.+/blobs/sha256:[0-9a-f]{64}$" {
      auth_basic "Auth";
      auth_basic_user_file ${o.htpasswd};
      proxy_pass https://registry;
      proxy_cache blobs;
      proxy_cache_key $uri;
      proxy_cache_valid 200 7d;
      proxy_cache_lock on;
      proxy_cache_lock_timeout 300s;
      proxy_ignore_headers Cache-Control Expires Set-Cookie;
      proxy_buffering on;
      proxy_http_version 1.1;
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      add_header X-Cache-Status $upstream_cache_status;
    }`

function nginxConf (prefix: string, o: PeerOptions, tuned: boolean, cache = false): string {
  return `
worker_processes auto;
error_log ${prefix}/logs/error.log;
pid ${prefix}/nginx.pid;
events { worker_connections 1024; }
http {
  access_log ${prefix}/logs/access.log${tuned ? ' combined buffer=64k flush=1s' : ''};
  client_body_temp_path ${prefix}/body;
  proxy_temp_path ${prefix}/proxy;${cache ? `
  proxy_cache_path ${prefix}/cache levels=1:2 keys_zone=blobs:10m max_size=20g inactive=7d use_temp_path=off;` : ''}
  upstream registry {
    server 127.0.0.1:${o.upstreamPort} weight=1;${tuned ? '\n    keepalive 32;' : ''}
  }
  server {
    listen 127.0.0.1:${o.port} ssl;
    server_name localhost;
    ssl_certificate ${o.cert};
    ssl_certificate_key ${o.key};
    ssl_session_cache shared:SSL:${tuned ? '10m' : '1m'};
    ssl_session_timeout 5m;
    ssl_ciphers HIGH:!aNULL:!MD5;
    ssl_prefer_server_ciphers on;
    client_max_body_size 300m;
    chunked_transfer_encoding on;${cache ? NGINX_BLOB_CACHE(prefix, o) : ''}
    location / {
      auth_basic "Auth";
      auth_basic_user_file ${o.htpasswd};
      proxy_pass https://registry;
      proxy_next_upstream error timeout invalid_header http_500 http_502 http_503 http_504;
      proxy_redirect off;
      proxy_buffering off;
      proxy_request_buffering off;
      proxy_http_version 1.1;${tuned ? `\n      proxy_ssl_trusted_certificate ${o.ca};\n      proxy_ssl_verify on;\n      proxy_ssl_name localhost;` : ''}
      proxy_set_header Host $http_host;
      proxy_set_header X-Real-IP $remote_addr;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;${tuned ? '\n      proxy_set_header Connection "";' : ''}
    }
  }
}
`
}

async function nginx (t: Cleanups, name: string, prefix: string, o: PeerOptions, tuned: boolean, cache = false): Promise<Peer> {
  need('nginx', 'nginx-light')
  mkdirSync(join(prefix, 'logs'), { recursive: true })
  const conf = join(prefix, 'nginx.conf')
  writeFileSync(conf, nginxConf(prefix, o, tuned, cache))
  const n = await runNginx(t, prefix, conf, { port: o.port, ca: o.ca })
  return { name, port: n.port, pid: n.pid, version: n.version, users: ['apr1', 'bcrypt'] }
}

async function caddy (t: Cleanups, prefix: string, o: PeerOptions): Promise<Peer> {
  need('caddy', 'caddy')
  mkdirSync(prefix, { recursive: true })
  const conf = join(prefix, 'Caddyfile')
  writeFileSync(conf, `{
\tadmin off
\tauto_https off
\tstorage file_system ${prefix}/data
\tlog {
\t\toutput file ${prefix}/error.log
\t}
}
# any Host: a request for another name must not get Caddy's empty 200
https://:${o.port} {
\tbind 127.0.0.1
\ttls ${o.cert} ${o.key}
\tlog {
\t\toutput file ${prefix}/access.log
\t}
\trequest_body {
\t\tmax_size 300MB
\t}
\tbasicauth {
${bcryptUsers(o.htpasswd).map(([u, h]) => `\t\t${u} ${Buffer.from(h).toString('base64')}`).join('\n')}
\t}
\treverse_proxy https://127.0.0.1:${o.upstreamPort} {
\t\theader_up Host {host}
\t\tflush_interval -1
\t\ttransport http {
\t\t\ttls_trusted_ca_certs ${o.ca}
\t\t\ttls_server_name localhost
\t\t}
\t}
}
`)
  const env = { HOME: prefix, XDG_DATA_HOME: join(prefix, 'data'), XDG_CONFIG_HOME: join(prefix, 'config') }
  const p = await runPeer(t, 'caddy', ['run', '--config', conf, '--adapter', 'caddyfile'], env, 'SIGTERM', { port: o.port, ca: o.ca })
  return { name: 'caddy', port: o.port, pid: p.pid, version: spawnSync('caddy', ['version'], { encoding: 'utf8' }).stdout.trim().split(' ')[0], users: ['bcrypt'] }
}

async function haproxy (t: Cleanups, prefix: string, o: PeerOptions): Promise<Peer> {
  need('haproxy', 'haproxy')
  mkdirSync(prefix, { recursive: true })
  const pem = join(prefix, 'server.pem')
  writeFileSync(pem, readFileSync(o.cert, 'utf8') + readFileSync(o.key, 'utf8'))
  const conf = join(prefix, 'haproxy.cfg')
  writeFileSync(conf, `global
  nbthread ${Math.max(1, (await import('node:os')).cpus().length)}
  maxconn 4096
  tune.ssl.default-dh-param 2048
defaults
  mode http
  timeout connect 5s
  timeout client 900s
  timeout server 900s
  option forwardfor
userlist registry_users
${bcryptUsers(o.htpasswd).map(([u, h]) => `  user ${u} password ${h}`).join('\n')}
frontend registry_tls
  bind 127.0.0.1:${o.port} ssl crt ${pem} alpn http/1.1
  http-request auth realm Registry unless { http_auth(registry_users) }
  http-request deny deny_status 413 if { req.hdr_val(content-length) gt 314572800 }
  default_backend registry
backend registry
  server r1 127.0.0.1:${o.upstreamPort} ssl verify required ca-file ${o.ca} sni str(localhost)
`)
  const p = await runPeer(t, 'haproxy', ['-f', conf, '-db'], {}, 'SIGUSR1', { port: o.port, ca: o.ca })
  const version = /HAProxy version (\S+)/.exec(spawnSync('haproxy', ['-v'], { encoding: 'utf8' }).stdout)?.[1] ?? '?'
  return { name: 'haproxy', port: o.port, pid: p.pid, version, users: ['bcrypt'] }
}

/** Every peer, by name, in the order the table shows them. */
export const PEERS: Record<string, (t: Cleanups, prefix: string, o: PeerOptions) => Promise<Peer>> = {
  nginx: (t, prefix, o) => nginx(t, 'nginx', prefix, o, false),
  'nginx-tuned': (t, prefix, o) => nginx(t, 'nginx-tuned', prefix, o, true),
  caddy,
  haproxy
}

/** nginx with `proxy_cache` for blobs (the usual recipe), for the distant-registry measurement. */
export const nginxWithCache = async (t: Cleanups, prefix: string, o: PeerOptions): Promise<Peer> => await nginx(t, 'nginx proxy_cache', prefix, o, false, true)
