package spa

import (
	"crypto/aes"
	"crypto/cipher"
	"testing"
)

func mustAES(t testing.TB, key []byte) cipher.Block {
	t.Helper()
	b, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
