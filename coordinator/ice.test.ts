import { describe, expect, it } from 'vitest'
import { checkIceOptions, IceConfig, iceUrlProblem, mintTurnCredential } from './ice.ts'

describe('ICE configuration', () => {
  it('mints TURN REST API credentials: expiry:participant, base64 HMAC-SHA1 with the secret (as coturn checks them)', () => {
    // The expected password was computed with `openssl dgst -sha1 -hmac shoal-secret -binary | base64`.
    expect(mintTurnCredential('shoal-secret', 'node-1', 3600, 1_700_000_000_000)).toEqual({
      username: '1700003600:node-1',
      credential: 'qQSM0rzqzLh8i8uy6udtLt86Fjs=',
    })
  })

  it('hands each participant its own TURN credential and STUN URLs as given', () => {
    const ice = new IceConfig(
      {
        servers: ['stun:stun.example.org', 'turn:127.0.0.1:3478?transport=udp', 'turns:turn.example.org:5349?transport=tcp'],
        turnSecret: 'a-long-secret',
        turnTtlSeconds: 600,
      },
      () => 1_000_000,
    )
    const a = ice.serversFor('node-a')
    expect(a[0]).toEqual({ urls: ['stun:stun.example.org'] })
    expect(a[1]?.urls).toEqual(['turn:127.0.0.1:3478?transport=udp', 'turns:turn.example.org:5349?transport=tcp'])
    expect(a[1]?.username).toBe('1600:node-a')
    expect(ice.serversFor('node-b')[1]?.credential).not.toBe(a[1]?.credential)
    expect(ice.transportPolicy).toBe('all')
    expect(new IceConfig().serversFor('x')).toEqual([])
  })

  it('refuses what a browser would not take, with the reason', () => {
    expect(iceUrlProblem('turn:127.0.0.1:3478?transport=udp')).toBeUndefined()
    expect(iceUrlProblem('stun:[::1]:3478')).toBeUndefined()
    expect(iceUrlProblem('http://turn.example.org')).toMatch(/not an ICE server URL/)
    expect(iceUrlProblem('turn:host:70000')).toMatch(/port/)
    expect(iceUrlProblem('turn:host?transport=sctp')).toMatch(/not an ICE server URL/)
    expect(iceUrlProblem('stun:host?transport=udp')).toMatch(/turn: and turns:/)
    expect(() => checkIceOptions({ servers: ['turn:host'] })).toThrow(/needs --turn-secret/)
    expect(() => checkIceOptions({ servers: ['stun:host'], turnSecret: 'a-long-secret' })).toThrow(/no --ice-server is a turn/)
    expect(() => checkIceOptions({ transportPolicy: 'relay' })).toThrow(/relay needs a turn/)
    expect(() => checkIceOptions({ servers: ['turn:host'], turnSecret: 'a-long-secret', turnTtlSeconds: 5 })).toThrow(/--turn-ttl/)
  })
})
