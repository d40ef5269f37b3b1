package chaos

import "math/rand/v2"

// The storage faults of the nemesis (storage.go does the damage).
func init() {
	storageDamage[FaultTornTail] = TornTail
	storageDamage[FaultZeroTail] = ZeroTail
	storageDamage[FaultGarbage] = GarbageTail
	storageDamage[FaultBitFlip] = BitFlip
	storageDamage[FaultWipe] = func(dir string, _ *rand.Rand) (string, error) { return WipeDataDir(dir) }
}
