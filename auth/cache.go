package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"sync"
	"time"
)

// Cache remembers recent successful password verifications so that a
// client sending its password with every request pays the key derivation
// (thousands of HMACs) once per TTL, not per request. An entry is keyed by
// the user and a keyed hash of the password (the key is random per
// process), and holds the StoredKey it was verified against: a changed or
// deleted credential is never answered from the cache.
type Cache struct {
	ttl time.Duration
	max int
	key [32]byte

	mu      sync.Mutex // guards entries
	entries map[cacheKey]cacheEntry
}

type cacheKey struct {
	user string
	pass [32]byte
}

type cacheEntry struct {
	storedKey string
	expires   time.Time
}

// NewCache returns a cache keeping successes for ttl, at most max of them.
func NewCache(ttl time.Duration, max int) *Cache {
	c := &Cache{ttl: ttl, max: max, entries: map[cacheKey]cacheEntry{}}
	rand.Read(c.key[:])
	return c
}

func (c *Cache) keyOf(user, password string) cacheKey {
	m := hmac.New(sha256.New, c.key[:])
	m.Write([]byte(password))
	k := cacheKey{user: user}
	copy(k.pass[:], m.Sum(nil))
	return k
}

// Verify reports whether password matches cred for user, from the cache
// when it was verified against the same credential within the TTL.
func (c *Cache) Verify(user, password string, cred Credential, now time.Time) bool {
	k := c.keyOf(user, password)
	c.mu.Lock()
	e, ok := c.entries[k]
	c.mu.Unlock()
	if ok && now.Before(e.expires) && e.storedKey == string(cred.StoredKey) {
		return true
	}
	if !cred.Verify(password) {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.max {
		for k, e := range c.entries {
			if !now.Before(e.expires) {
				delete(c.entries, k)
			}
		}
		if len(c.entries) >= c.max {
			clear(c.entries)
		}
	}
	c.entries[k] = cacheEntry{storedKey: string(cred.StoredKey), expires: now.Add(c.ttl)}
	return true
}
