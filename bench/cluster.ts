// The `workers` experiment (issue 6): `berth start ARGS…` in BERTH_WORKERS node:cluster workers sharing
// one listening socket, as nginx's `worker_processes auto` shares its port. `npm run bench` uses it when
// BERTH_WORKERS is set, to measure berth both ways. Not a berth setting: measured on 2 cores it gained
// nothing where berth is behind (README, "What was tried"), and every worker would hold its own
// credential cache, throttle counters, probes and metrics.
import cluster from 'node:cluster'

const workers = Number(process.env.BERTH_WORKERS ?? 2)
if (cluster.isPrimary) {
  for (let i = 0; i < workers; i++) cluster.fork()
  const stop = (signal: NodeJS.Signals) => { for (const w of Object.values(cluster.workers ?? {})) w?.process.kill(signal) }
  process.on('SIGTERM', () => stop('SIGTERM'))
  process.on('SIGINT', () => stop('SIGINT'))
  cluster.on('exit', () => { if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(0) })
} else {
  const entry = '../bin/berth.js'
  await import(entry) // reads `start --config …` from process.argv, as when run directly
}
