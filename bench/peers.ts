// The proxies an operator would put in front of a registry instead of berth, each configured as close
// to berth's setup as it allows: TLS with the same certificate, HTTP Basic auth against the same users,
// one upstream registry over verified TLS, bodies streamed both ways, a 300 MB body limit.
//   nginx        as operators set it up in front of a registry (docs/nginx.md): the Tengine-only `check`
//                line left out, `proxy_request_buffering off` and `proxy_http_version 1.1` added so that
//                it streams, `worker_processes auto` as Debian's nginx.conf ships it
//   nginx-tuned  the same, as its experts would tune it: upstream keepalive (`keepalive 32` with
//                `proxy_set_header Connection ""`), a buffered access log, a larger TLS session cache, and
//                the upstream certificate verified as berth does (the usual setup skips that)
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { need, runNginx, type Cleanups } from './lib.js'

export interface Peer { name: string, port: number, pid: number, version: string }

export interface PeerOptions { port: number, upstreamPort: number, cert: string, key: string, htpasswd: string, ca: string }

function nginxConf (prefix: string, o: PeerOptions, tuned: boolean): string {
  return `
worker_processes auto;
error_log ${prefix}/logs/error.log;
pid ${prefix}/nginx.pid;
events { worker_connections 1024; }
http {
  access_log ${prefix}/logs/access.log${tuned ? ' combined buffer=64k flush=1s' : ''};
  client_body_temp_path ${prefix}/body;
  proxy_temp_path ${prefix}/proxy;
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
    chunked_transfer_encoding on;
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

async function nginx (t: Cleanups, name: string, prefix: string, o: PeerOptions, tuned: boolean): Promise<Peer> {
  need('nginx', 'nginx-light')
  mkdirSync(join(prefix, 'logs'), { recursive: true })
  const conf = join(prefix, 'nginx.conf')
  writeFileSync(conf, nginxConf(prefix, o, tuned))
  const n = await runNginx(t, prefix, conf, { port: o.port, ca: o.ca })
  return { name, port: n.port, pid: n.pid, version: n.version }
}

/** Every peer, by name, in the order the table shows them. */
export const PEERS: Record<string, (t: Cleanups, prefix: string, o: PeerOptions) => Promise<Peer>> = {
  nginx: (t, prefix, o) => nginx(t, 'nginx', prefix, o, false),
  'nginx-tuned': (t, prefix, o) => nginx(t, 'nginx-tuned', prefix, o, true)
}
