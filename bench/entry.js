// berth as the benchmark runs it: `berth start ARGS…` through bin/berth.js (in a checkout: the TypeScript
// sources through tsx, as `npm start`), or from the compiled build (dist/, what the Docker image runs) with
// BERTH_BUILD=1; bench/run.ts builds it first. Measured both ways, alternating (docs/measurements.md, "What was tried"):
// the build spends less CPU per small request (tsx's esbuild transform names every closure it creates with
// Object.defineProperty: 401 path 42 vs 34 us), but streamed 250 MB blobs at 0.73-0.87x nginx against
// 0.99-1.15x from the sources, and the same build with tsx's loader registered streamed at 0.93-1.10x: not
// explained yet, so the default stays what every earlier measurement used.
//
// BERTH_WORKERS=N runs N node:cluster workers sharing the listening socket, as nginx's
// `worker_processes auto` shares its port: the `workers` experiment. Not a berth setting:
// measured on 2 cores it gained nothing where berth is behind (docs/measurements.md, "What was tried"), and every
// worker would hold its own credential cache, throttle counters, probes and metrics.
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
