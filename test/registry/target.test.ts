// Reading the request target without sockets: framing that Node lets through, form bodies the registry
// would read, paths that are not canonical, names outside the grammar, mount sources.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { IncomingMessage } from 'node:http'
import { readTarget } from '../../src/registry/target.js'
import { formBodyProblem, mountSources } from '../../src/registry/parameters.js'
import { isCanonicalPath, isRepositoryName, methodAction, namesBadRepository, parseRegistryPath } from '../../src/registry/path.js'

function req (url: string, raw: string[] = ['Host', 'r.example'], version = '1.1'): IncomingMessage {
  const headers: Record<string, string> = {}
  for (let i = 0; i < raw.length; i += 2) headers[raw[i].toLowerCase()] ??= raw[i + 1]
  const [major, minor] = version.split('.').map(Number)
  return { url, rawHeaders: raw, headers, httpVersion: version, httpVersionMajor: major, httpVersionMinor: minor } as unknown as IncomingMessage
}
const refusal = (t: ReturnType<typeof readTarget>) => 'refused' in t ? t.refused : 'ok'

test('framing a proxy must refuse: HTTP/0.9 and 1.2+, two Hosts, a Host that is not a host, chunked HTTP/1.0', () => {
  assert.equal(refusal(readTarget(req('/v2/'))), 'ok')
  assert.equal(refusal(readTarget(req('/v2/', ['Host', 'r.example'], '1.0'))), 'ok')
  assert.equal(refusal(readTarget(req('/v2/', [], '1.0'))), 'ok', 'HTTP/1.0 may omit Host')
  assert.equal(refusal(readTarget(req('/v2/', ['Host', 'r.example'], '0.9'))), 'framing')
  assert.equal(refusal(readTarget(req('/v2/', ['Host', 'r.example'], '1.2'))), 'framing')
  assert.equal(refusal(readTarget(req('/v2/', ['Host', 'a', 'host', 'b']))), 'framing')
  for (const host of ['a b', 'user@a', 'a/evil', '', 'a:99999x']) assert.equal(refusal(readTarget(req('/v2/', ['Host', host]))), 'framing', host)
  for (const host of ['r.example:8443', '10.0.0.1', '[::1]:443', 'localhost']) assert.equal(refusal(readTarget(req('/v2/', ['Host', host]))), 'ok', host)
  assert.equal(refusal(readTarget(req('/v2/', ['Host', 'a', 'Transfer-Encoding', 'chunked'], '1.0'))), 'framing')
  assert.equal(refusal(readTarget(req('/v2/', ['Host', 'a', 'Transfer-Encoding', 'chunked']))), 'ok')
  assert.equal(refusal(readTarget(req('/v2/', ['Host', 'a', 'Date', 'x', 'hOsT-Other', 'y']))), 'ok', 'only headers named Host count')
  assert.equal(refusal(readTarget(req('/v2/', ['hOsT', 'a', 'HOST', 'b']))), 'framing')
  assert.equal(refusal(readTarget(req('/v2/', ['Host', 'a'], '2.0'))), 'framing')
  // what each refusal says (the client reads it in the registry error)
  const message = (t: ReturnType<typeof readTarget>) => 'refused' in t ? t.message : ''
  assert.equal(message(readTarget(req('/v2/', ['Host', 'a'], '1.2'))), 'HTTP/1.2 is not supported')
  assert.equal(message(readTarget(req('/v2/', ['Host', 'a', 'Host', 'b']))), 'more than one Host header')
  assert.equal(message(readTarget(req('/v2/', ['Host', 'a b']))), 'Host is not a host name or address with an optional port')
  assert.equal(message(readTarget(req('/v2/', ['Host', 'a', 'Transfer-Encoding', 'chunked'], '1.0'))), 'Transfer-Encoding on HTTP/1.0')
  assert.equal(message(readTarget(req('http://x/v2/'))), 'expected a path starting with /')
  assert.equal(message(readTarget(req('/v2/a%2Fb/manifests/x'))), 'the path must not hold encoded characters, dot or empty segments')
  assert.equal(message(readTarget(req('/v2/A/manifests/x'))), 'invalid repository name')
})

test('targets: absolute forms refused and closed, non-canonical paths refused, bad names NAME_INVALID', () => {
  assert.equal(refusal(readTarget(req('http://r.example/v2/'))), 'absolute')
  assert.equal(refusal(readTarget(req('*'))), 'absolute')
  for (const path of ['/v2/a%2Fb/manifests/x', '/v2/a/../b/manifests/x', '/v2//a/manifests/x', '/v2/a/./manifests/x', '/v2/a\\b/manifests/x', '/v2/a;b/manifests/x', '/v2/.hidden/manifests/x']) {
    assert.equal(refusal(readTarget(req(path))), 'path', path)
    assert.equal(isCanonicalPath(path), false, path)
  }
  assert.equal(refusal(readTarget(req('/v2/a/manifests/x?q=%2F..'))), 'ok', 'the query is not part of the path check')
  assert.equal(refusal(readTarget(req('/v2/UPPER/manifests/x'))), 'name')
  assert.equal(refusal(readTarget(req(`/v2/${'a'.repeat(256)}/manifests/x`))), 'name')
  assert.equal(refusal(readTarget(req(`/v2/${'a'.repeat(255)}/manifests/x`))), 'ok')
  assert.equal(refusal(readTarget(req('/healthz'))), 'ok', 'not a registry path: the access rules answer 404')
  assert.deepEqual(readTarget(req('/v2/team/app/blobs/uploads/')), { action: { kind: 'upload', repository: 'team/app', reference: null } })
  assert.deepEqual(readTarget(req('/v2/team/app/manifests/v1')), { action: { kind: 'manifest', repository: 'team/app', reference: 'v1' } })
  assert.deepEqual(readTarget(req('/v2/team/app/manifests/v1?x=%2F')), { action: { kind: 'manifest', repository: 'team/app', reference: 'v1' } })
  assert.equal(namesBadRepository('/other/v2/A/manifests/x', parseRegistryPath('/other/v2/A/manifests/x')), false, 'only paths under /v2/')
  assert.equal(namesBadRepository('/v2/x/manifests/y', parseRegistryPath('/v2/x/manifests/y')), false)
})

test('registry paths parse into kind, repository and reference', () => {
  const cases: Array<[string, string, string | null, string | null]> = [
    ['/v2/', 'base', null, null],
    ['/v2', 'base', null, null],
    ['/v2/_catalog', 'catalog', null, null],
    ['/v2/library/ubuntu/manifests/22.04', 'manifest', 'library/ubuntu', '22.04'],
    ['/v2/a/manifests/sha256:abc', 'manifest', 'a', 'sha256:abc'],
    ['/v2/team-a/app.x/blobs/sha256:0123', 'blob', 'team-a/app.x', 'sha256:0123'],
    ['/v2/a/b/c/blobs/uploads/', 'upload', 'a/b/c', null],
    ['/v2/a/blobs/uploads/8a3e-uuid', 'upload', 'a', '8a3e-uuid'],
    ['/v2/a/tags/list', 'tags', 'a', null],
    ['/v2/a/tags/other', 'tags', 'a', 'other'],
    ['/v2/a/manifests/list', 'manifest', 'a', 'list'],
    ['/v2/a/manifests/', 'manifest', 'a', null],
    ['/v2/a/blobs/uploads', 'upload', 'a', null],
    ['/v2/a/blobs/uploadsx', 'blob', 'a', 'uploadsx'],
    ['/v2/a/manifests/uploads/x', 'manifest', 'a', 'uploads/x'],
    ['/v2/a/referrers/', 'referrers', 'a', null],
    ['/v2/a/referrers/sha256:abc', 'referrers', 'a', 'sha256:abc'],
    ['/v2/UPPER/manifests/x', 'other', null, null],
    ['/healthz', 'other', null, null]
  ]
  for (const [path, kind, repository, reference] of cases) {
    assert.deepEqual(parseRegistryPath(path), { kind, repository, reference }, path)
  }
})

test('repository names: distribution\'s grammar and length', () => {
  for (const name of ['a', 'team/app', 'a.b_c-d/e__f', 'a--b', `${'a'.repeat(255)}`]) assert.equal(isRepositoryName(name), true, name)
  for (const name of ['', 'A', 'a/', '/a', 'a//b', '-a', 'a-', 'a..b', 'a.', '_a', `${'a'.repeat(256)}`, 'private/secret?x']) assert.equal(isRepositoryName(name), false, name)
})

test('methods map to the actions of the rules', () => {
  assert.deepEqual(['GET', 'HEAD', 'OPTIONS', undefined, 'POST', 'PUT', 'PATCH', 'DELETE'].map(methodAction), ['pull', 'pull', 'pull', 'pull', 'push', 'push', 'push', 'delete'])
})

test('a body the registry would read as a form is refused, in every spelling; other types pass', () => {
  const problem = (type: string | string[]) => {
    const raw = (Array.isArray(type) ? type : [type]).flatMap((t) => ['Content-Type', t])
    return formBodyProblem({ 'content-type': Array.isArray(type) ? type[0] : type }, raw)
  }
  for (const type of ['application/x-www-form-urlencoded', 'Application/X-WWW-Form-Urlencoded; charset=utf-8', ' multipart/form-data ; boundary=x', 'MULTIPART/FORM-DATA']) {
    assert.match(problem(type) ?? '', /form bodies/, type)
  }
  assert.match(problem(['application/octet-stream', 'application/x-www-form-urlencoded']) ?? '', /more than one/)
  assert.equal(formBodyProblem({ 'content-type': 'application/octet-stream' }, ['Content-Type', 'application/octet-stream', 'X-Request-Id', 'abc', 'Content-Typo', 'x']), null, 'other headers of the same length do not count')
  assert.match(problem(Buffer.from('applİcation/x-www-form-urlencoded').toString('latin1')) ?? '', /ASCII/)
  for (const type of ['application/octet-stream', 'application/vnd.oci.image.manifest.v1+json', 'application/vnd.example.platform+json', 'multipart/mixed']) assert.equal(problem(type), null, type)
  assert.equal(formBodyProblem({}, []), null)
})

test('mount sources: every non-empty `from` of a POST, whatever the order or the spelling', () => {
  assert.deepEqual(mountSources('POST', '/v2/a/blobs/uploads/?mount=sha256:x&from=b&from=c'), ['b', 'c'])
  assert.deepEqual(mountSources('POST', '/v2/a/blobs/uploads/?from=b'), ['b'], 'without mount too')
  assert.deepEqual(mountSources('POST', '/v2/a/blobs/uploads/?%66rom=private%2Fsecret'), ['private/secret'])
  assert.deepEqual(mountSources('POST', '/v2/a/blobs/uploads/?from=&from=x'), ['x'])
  assert.deepEqual(mountSources('PUT', '/v2/a/blobs/uploads/u?from=b'), [])
  assert.deepEqual(mountSources('POST', '/v2/a/blobs/uploads/'), [])
})

test('berth\'s own /token takes the OAuth2 form (it never reaches the registry); every other path does not', () => {
  const form = ['Host', 'r.example', 'Content-Type', 'application/x-www-form-urlencoded']
  assert.equal(refusal(readTarget(req('/token', form))), 'ok')
  assert.equal(refusal(readTarget(req('/token?service=registry', form))), 'ok')
  assert.equal(refusal(readTarget(req('/tokens', form))), 'framing')
  assert.equal(refusal(readTarget(req('/v2/a/blobs/uploads/', form))), 'framing')
})
