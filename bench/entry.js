// berth as the benchmark runs it: `berth start ARGS…` from the compiled build (dist/bundle, what the Docker
// image runs; bench/run.ts builds it first, and sets BERTH_BUILD=1), or through bin/berth.js (in a
// checkout: the TypeScript sources through tsx, as `npm start`) with BERTH_SOURCES=1 npm run bench.

// (`workers` in the config runs several processes; bench/run.ts's workers section measures it.)
if (process.env.BERTH_BUILD === '1') {
  if (process.argv[2] === 'start') (await import('../dist/bundle/lean-start.js')).beginLeanStart() // as bin/berth.js
  const { main } = await import('../dist/bundle/cli.js')
  const code = await main(process.argv.slice(2))
  if (code >= 0) process.exitCode = code
} else {
  await import('../bin/berth.js') // reads `start --config …` from process.argv, as when run directly
}
