// berth as the Docker image runs it: `berth start ARGS…` from the compiled build (dist/, `npm run build`),
// which bench/run.ts makes first. Plain JavaScript on purpose: a checkout's bin/berth.js runs the
// TypeScript sources through tsx, whose esbuild transform keeps function names with one
// Object.defineProperty call per closure created; on small requests that cost berth ~20 % more CPU
// (401 path 42 vs 34 us per request), which operators running the image never pay.
//
// BERTH_WORKERS=N runs N node:cluster workers sharing the listening socket, as nginx's
// `worker_processes auto` shares its port: the `workers` experiment of issue 6. Not a berth setting:
// measured on 2 cores it gained nothing where berth is behind (README, "What was tried"), and every
// worker would hold its own credential cache, throttle counters, probes and metrics.
import cluster from 'node:cluster'

const workers = Number(process.env.BERTH_WORKERS ?? 1)
if (workers > 1 && cluster.isPrimary) {
  for (let i = 0; i < workers; i++) cluster.fork()
  const stop = (signal) => { for (const w of Object.values(cluster.workers ?? {})) w?.process.kill(signal) }
  process.on('SIGTERM', () => stop('SIGTERM'))
  process.on('SIGINT', () => stop('SIGINT'))
  cluster.on('exit', () => { if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(0) })
} else {
  const { main } = await import('../dist/src/cli.js')
  const code = await main(process.argv.slice(2))
  if (code >= 0) process.exitCode = code
}
