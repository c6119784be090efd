// The `berth` command: start, check, reload, stop, status, certs, passwd, version, help. commander
// parses it (per-command help, unknown options and extra arguments are errors); each action returns the
// exit code, or -1 for "keep running" (start).
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander'
import { resolve } from 'node:path'
import { loadConfig, configWarnings } from './config/load.js'
import { ConfigError } from './errors.js'
import { startServer } from './server.js'
import { control, readTarget, statusText, type ControlAction, type ControlResult, type Target } from './control.js'
import { VERSION } from './version.js'

function fail (message: string): number {
  process.stderr.write(`berth: ${message}\n`)
  return 1
}

function configProblem (err: unknown): number {
  if (err instanceof ConfigError) {
    process.stderr.write(`configuration ${err.file} is invalid:\n${err.problems.map((p) => `  ${p}`).join('\n')}\n`)
    return 1
  }
  return fail((err as Error).message)
}

function integer (min: number, max: number, what: string) {
  return (value: string): number => {
    const n = Number(value)
    if (!/^\d+$/.test(value) || n < min || n > max) throw new InvalidArgumentError(`expected ${what}.`)
    return n
  }
}

const collect = (value: string, previous: string[]) => [...previous, value]

function program (setCode: (code: number) => void): Command {
  /** reload, stop, status: ask the running berth, print its answer, exit 0 or 1. */
  const talk = (ask: (target: Target) => Promise<ControlResult>) => async (opts: { config: string }) => {
    try {
      const r = await ask(readTarget(opts.config))
      process[r.ok ? 'stdout' : 'stderr'].write(r.message + '\n')
      setCode(r.ok ? 0 : 1)
    } catch (err) { setCode(configProblem(err)) }
  }

  const cli = new Command('berth')
    .description('A TLS edge proxy for private Docker/OCI registries.')
    .version(VERSION, '-v, --version', 'print the version')
    .helpCommand('help [command]', 'show help for a command')
    .showHelpAfterError('(berth help for the commands, berth help COMMAND for one)')
    .exitOverride()
  cli.configureHelp({ sortSubcommands: false })

  cli.command('start')
    .description('run the proxy in the foreground')
    .requiredOption('-c, --config <file>', 'the configuration file (YAML)')
    .option('--init-certs', 'create DIR/server.crt and DIR/server.key (and a CA) when the configured ones are missing')
    .option('--dev', 'development (npm start): --init-certs, and a development registry when none answers at the configured one')
    .action(async (opts: { config: string, initCerts?: boolean, dev?: boolean }) => {
      try {
        await startServer(opts.config, { initCerts: opts.initCerts === true, dev: opts.dev === true })
        setCode(-1)
      } catch (err) { setCode(configProblem(err)) }
    })

  cli.command('check')
    .description('validate a configuration and every file it names, as nginx -t does')
    .requiredOption('-c, --config <file>', 'the configuration file (YAML)')
    .action(async (opts: { config: string }) => {
      try {
        const config = await loadConfig(opts.config)
        for (const w of configWarnings(config)) process.stderr.write(`warning: ${w}\n`)
        process.stdout.write(`configuration ${config.file} is valid\n`)
        setCode(0)
      } catch (err) { setCode(configProblem(err)) }
    })

  for (const [name, description] of [
    ['reload', 're-read the configuration of a running berth (as nginx -s reload); prints whether it applied'],
    ['stop', 'drain and stop a running berth (as nginx -s quit)']
  ] as Array<[ControlAction, string]>) {
    cli.command(name)
      .description(description)
      .requiredOption('-c, --config <file>', 'the configuration file the running berth was started with')
      .addHelpText('after', '\nberth finds the running process through the admin listener (admin in the config) or, without one, the pid file (pidFile).')
      .action(talk((target) => control(target, name)))
  }

  cli.command('status')
    .description('print the listeners and the upstream pool of a running berth (from its admin listener)')
    .requiredOption('-c, --config <file>', 'the configuration file the running berth was started with')
    .action(talk(statusText))

  cli.command('certs')
    .description('make a CA and a server certificate, and say how to trust the CA')
    .requiredOption('--out <dir>', 'where to write ca.crt, ca.key, server.crt, server.key (an existing CA there is reused)')
    .option('--host <name>', 'a DNS name of the certificate (repeatable)', collect, [])
    .option('--ip <address>', 'an IP address of the certificate (repeatable)', collect, [])
    .option('--port <port>', 'the port clients use, for the trust instructions', integer(1, 65535, 'a port number'), 443)
    .action(async (opts: { out: string, host: string[], ip: string[], port: number }) => {
      try {
        const { makeCerts, trustInstructions } = await import('./certs.js')
        const { files, createdCa } = await makeCerts({ hosts: opts.host, ips: opts.ip, out: resolve(opts.out) })
        if (!createdCa) process.stdout.write(`Reused the CA in ${files.caCert}.\n`)
        process.stdout.write(trustInstructions(files, [...opts.host, ...opts.ip], opts.port) + '\n')
        setCode(0)
      } catch (err) { setCode(fail((err as Error).message)) }
    })

  cli.command('token-cert')
    .description('make the key that signs registry tokens (token mode) and its certificate, and print the registry\'s config lines')
    .requiredOption('--out <dir>', 'where to write token.key and token.crt (existing ones are kept)')
    .option('--realm <url>', 'the token URL clients reach berth at', 'https://registry.example.com/token')
    .option('--issuer <name>', 'the tokens\' issuer', 'berth')
    .option('--service <name>', 'the registry\'s service name', 'registry')
    .action(async (opts: { out: string, realm: string, issuer: string, service: string }) => {
      try {
        const { makeTokenCert } = await import('./certs.js')
        const { key, cert, created } = await makeTokenCert(resolve(opts.out), opts.issuer)
        process.stdout.write([
          created ? `Made ${key} (keep it private) and ${cert}.` : `Kept the existing ${key} and ${cert}.`,
          '',
          'berth (under auth:):',
          `  token: { issuer: ${opts.issuer}, service: ${opts.service}, key: ${key}, cert: ${cert} }`,
          '',
          'registry (config.yml; the registry must read the certificate, and should not be reachable but through berth):',
          '  auth:',
          '    token:',
          `      realm: ${opts.realm}`,
          `      service: ${opts.service}`,
          `      issuer: ${opts.issuer}`,
          `      rootcertbundle: ${cert}`,
          ''
        ].join('\n'))
        setCode(0)
      } catch (err) { setCode(fail((err as Error).message)) }
    })

  /** The configuration and its access keys file (access keys need an auth section). */
  const keysOf = async (path: string) => {
    const config = await loadConfig(path)
    if (config.auth?.keys === undefined) throw new Error(`${path} has no auth section: access keys need one`)
    return { config, file: config.auth.keys }
  }
  const key = cli.command('key').description('access keys for machines (CI jobs, robots): create, list, revoke')
  key.command('create')
    .description('make a key and print its secret, once: the password of `docker login -u USER`')
    .requiredOption('-c, --config <file>', 'the configuration file (its auth.keys file is written)')
    .requiredOption('--user <name>', 'the user the key stands for (the access rules apply to it)')
    .requiredOption('--repos <globs>', 'repositories the key may reach, comma-separated globs (team/**)')
    .option('--actions <list>', 'what it may do there: pull, push, delete, catalog', 'pull')
    .option('--expires <duration>', 'lifetime (e.g. 90d, 12h); never = no expiry', '90d')
    .action(async (opts: { config: string, user: string, repos: string, actions: string, expires: string }) => {
      try {
        const { createKey } = await import('./auth/keys.js')
        const { parseDuration, DURATION_PATTERN } = await import('./config/units.js')
        const actions = opts.actions.split(',').map((a) => a.trim())
        const bad = actions.filter((a) => !['pull', 'push', 'delete', 'catalog'].includes(a))
        if (bad.length > 0) { setCode(fail(`--actions: ${bad.join(', ')}: expected pull, push, delete, catalog`)); return }
        if (opts.expires !== 'never' && (!new RegExp(DURATION_PATTERN).test(opts.expires) || parseDuration(opts.expires) <= 0)) { setCode(fail(`--expires ${opts.expires}: expected a duration like 90d or 12h, or never`)); return }
        const repos = opts.repos.split(',').map((r) => r.trim()).filter((r) => r !== '')
        if (repos.length === 0 || repos.some((r) => !/^[a-z0-9._/*?-]+$/.test(r))) { setCode(fail(`--repos ${opts.repos}: expected repository globs like team/**`)); return }
        const { file } = await keysOf(opts.config)
        const { key: k, secret } = await createKey(file, { user: opts.user, repositories: repos, actions, expiresIn: opts.expires === 'never' ? null : parseDuration(opts.expires) })
        process.stderr.write(`key ${k.id} for ${k.user}: ${k.actions.join(',')} on ${k.repositories.join(', ')}, ${k.expires === null ? 'no expiry' : `expires ${k.expires}`} (in ${file}).\nThe secret, shown only now (docker login -u ${k.user} --password-stdin):\n`)
        process.stdout.write(`${secret}\n`)
        setCode(0)
      } catch (err) { setCode(configProblem(err)) }
    })
  key.command('list')
    .description('list the keys (never their secrets)')
    .requiredOption('-c, --config <file>', 'the configuration file')
    .action(async (opts: { config: string }) => {
      try {
        const { listKeys, keyStatus } = await import('./auth/keys.js')
        const keys = await listKeys((await keysOf(opts.config)).file)
        process.stdout.write(['ID            USER            STATUS   EXPIRES                   ACTIONS  REPOSITORIES',
          ...keys.map((k) => `${k.id}  ${k.user.padEnd(15)} ${keyStatus(k).padEnd(8)} ${(k.expires ?? 'never').padEnd(25)} ${k.actions.join(',').padEnd(8)} ${k.repositories.join(',')}`)].join('\n') + '\n')
        setCode(0)
      } catch (err) { setCode(configProblem(err)) }
    })
  key.command('revoke')
    .description('revoke a key: refused by every berth reading the file within 2 s')
    .requiredOption('-c, --config <file>', 'the configuration file')
    .argument('<id>', 'the key id (berth key list)')
    .action(async (id: string, opts: { config: string }) => {
      try {
        const { revokeKey } = await import('./auth/keys.js')
        const { file, config } = await keysOf(opts.config)
        const k = await revokeKey(file, id)
        // Replicas whose keys file has not changed yet hear it from the shared store.
        if (config.cluster !== undefined) await (await import('./cluster/state.js')).publishRevocation(config.cluster, k.id)
        process.stdout.write(`key ${k.id} (${k.user}) revoked ${k.revoked as string}${config.cluster !== undefined ? ', on every replica' : ''}\n`)
        setCode(0)
      } catch (err) { setCode(configProblem(err)) }
    })

  cli.command('passwd')
    .description('add or update USER in an htpasswd file (bcrypt cost 12, or apr1), or delete it; no apache2-utils needed')
    .argument('<file>', 'the htpasswd file')
    .argument('<user>', 'the user name')
    .argument('[password]', 'with -b only: the password (visible to other users of this machine; prefer --password-stdin)')
    .option('-c, --create', 'create the file, replacing an existing one (as htpasswd -c)')
    .option('-b, --batch', 'take the password from the command line (as htpasswd -b)')
    .option('--password-stdin', 'read the password from standard input')
    .addOption(new Option('-m, --md5', 'apr1 (MD5) instead of bcrypt').conflicts('bcrypt'))
    .option('-B, --bcrypt', 'bcrypt (the default)')
    .option('-C, --cost <cost>', 'bcrypt cost', integer(4, 17, 'a bcrypt cost from 4 to 17'), 12)
    .addOption(new Option('-D, --delete', 'delete USER').conflicts(['create', 'batch', 'passwordStdin']))
    .action(async (file: string, user: string, password: string | undefined, opts: { create?: boolean, batch?: boolean, passwordStdin?: boolean, md5?: boolean, cost: number, delete?: boolean }) => {
      if ((password !== undefined) !== (opts.batch === true)) {
        setCode(fail(opts.batch === true ? 'passwd -b needs FILE USER PASSWORD' : `passwd takes FILE and USER (a password on the command line needs -b)`))
        return
      }
      try {
        const { passwd, readPassword } = await import('./auth/passwd.js')
        const pw = opts.delete === true ? undefined : password ?? await readPassword(opts.passwordStdin === true)
        const done = await passwd({ file: resolve(file), user, kind: opts.md5 === true ? 'apr1' : 'bcrypt', cost: opts.cost, delete: opts.delete === true, create: opts.create === true, password: pw })
        process.stderr.write(`${done}\n`)
        setCode(0)
      } catch (err) { setCode(fail((err as Error).message)) }
    })

  cli.command('version')
    .description('print the version')
    .action(() => { process.stdout.write(`${VERSION}\n`); setCode(0) })
  return cli
}

export async function main (argv: string[]): Promise<number> {
  let code = 0
  const cli = program((c) => { code = c })
  if (argv.length === 0) {
    cli.outputHelp({ error: true })
    return 1
  }
  try {
    await cli.parseAsync(argv, { from: 'user' })
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 1
    throw err
  }
  return code
}
