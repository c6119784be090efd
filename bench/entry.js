// berth as the benchmark runs it: `berth start ARGS…` from the compiled build (dist/, what the Docker image
// runs; bench/run.ts builds it first, and sets BERTH_BUILD=1), or through bin/berth.js (in a checkout: the
// TypeScript sources through tsx, as `npm start`) with BERTH_SOURCES=1 npm run bench.
//
// BERTH_WORKERS=N runs N node:cluster workers sharing the listening socket, as nginx's
// `worker_processes auto` shares its port: the `workers` experiment. Not a berth setting: measured on 2
// cores it gained nothing where berth is behind (docs/measurements.md, "What was tried"), and every worker
// would hold its own credential cache, throttle counters, probes and metrics.
import cluster from 'node:cluster'

const workers = Number(process.env.BERTH_WORKERS ?? 1)
if (workers > 1 && cluster.isPrimary) {
  for (let i = 0; i < workers; i++) cluster.fork()
  const stop = (signal) => { for (const w of Object.values(cluster.workers ?? {})) w?.process.kill(signal) }
  process.on('SIGTERM', () => stop('SIGTERM'))
  process.on('SIGINT', () => stop('SIGINT'))
  cluster.on('exit', () => { if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(0) })
} else if (process.env.BERTH_BUILD === '1') {
  const { main } = await import('../dist/src/cli.js')
  const code = await main(process.argv.slice(2))
  if (code >= 0) process.exitCode = code
} else {
  await import('../bin/berth.js') // reads `start --config …` from process.argv, as when run directly
}
