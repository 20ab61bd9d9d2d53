package spa

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/md5"
	"crypto/subtle"
)

// Sizes of libfko's Rijndael framing.
const (
	blockSize    = aes.BlockSize // 16
	saltLen      = 8
	maxKeyLen    = 32 // RIJNDAEL_MAX_KEYSIZE: longer keys are refused
	legacyKeyLen = 16
	headerLen    = 16 // "Salted__" + salt, in front of the ciphertext
)

var saltedMagic = []byte("Salted__")

// deriveKeyIV is libfko's rij_salt_and_iv (OpenSSL's EVP_BytesToKey with
// MD5 and one iteration): D1 = MD5(pass|salt), Dn = MD5(Dn-1|pass|salt);
// the AES-256 key is D1|D2 and the IV is D3. pass is the configured key as
// bytes (a passphrase or the decoded KEY_BASE64), at most 32 bytes; in
// Legacy mode it is first padded with '0' to 16 bytes.
func deriveKeyIV(pass []byte, salt []byte, mode Mode) (key [32]byte, iv [16]byte) {
	var pw [maxKeyLen]byte
	n := copy(pw[:], pass)
	if mode == Legacy && n < legacyKeyLen {
		for ; n < legacyKeyLen; n++ {
			pw[n] = '0'
		}
	}
	var d [md5.Size]byte
	var out [48]byte
	for i := 0; i < 3; i++ {
		h := md5.New()
		if i > 0 {
			h.Write(d[:])
		}
		h.Write(pw[:n])
		h.Write(salt)
		h.Sum(d[:0])
		copy(out[i*md5.Size:], d[:])
	}
	copy(key[:], out[:32])
	copy(iv[:], out[32:])
	subtle.XORBytes(pw[:], pw[:], pw[:]) // clear the copy of the key
	return key, iv
}

// legacyKey returns the key libfko uses in Legacy mode: cut to 16 bytes
// (fwknopd truncates with a warning, the client likewise).
func legacyKey(k []byte, mode Mode) []byte {
	if mode == Legacy && len(k) > legacyKeyLen {
		return k[:legacyKeyLen]
	}
	return k
}

// crypt runs libfko's block_encrypt or block_decrypt over whole blocks of
// in into out (same length, a multiple of 16). CFB and OFB are the
// 128-bit variants; CTR increments the whole 16-byte counter big-endian.
func crypt(b cipher.Block, mode Mode, iv []byte, out, in []byte, decrypt bool) {
	switch mode {
	case ECB:
		for i := 0; i < len(in); i += blockSize {
			if decrypt {
				b.Decrypt(out[i:i+blockSize], in[i:i+blockSize])
			} else {
				b.Encrypt(out[i:i+blockSize], in[i:i+blockSize])
			}
		}
	case CBC, Legacy:
		if decrypt {
			cipher.NewCBCDecrypter(b, iv).CryptBlocks(out, in)
		} else {
			cipher.NewCBCEncrypter(b, iv).CryptBlocks(out, in)
		}
	case CFB:
		var reg [blockSize]byte
		copy(reg[:], iv)
		for i := 0; i < len(in); i += blockSize {
			b.Encrypt(reg[:], reg[:])
			var c [blockSize]byte
			copy(c[:], in[i:i+blockSize]) // in and out may alias
			subtle.XORBytes(out[i:i+blockSize], reg[:], c[:])
			if decrypt {
				reg = c
			} else {
				copy(reg[:], out[i:i+blockSize])
			}
		}
	case OFB:
		var reg [blockSize]byte
		copy(reg[:], iv)
		for i := 0; i < len(in); i += blockSize {
			b.Encrypt(reg[:], reg[:])
			subtle.XORBytes(out[i:i+blockSize], reg[:], in[i:i+blockSize])
		}
	case CTR:
		cipher.NewCTR(b, iv).XORKeyStream(out, in)
	}
}

// pad appends PKCS#7 padding (1 to 16 bytes), as rij_encrypt does.
func pad(p []byte) []byte {
	n := blockSize - len(p)%blockSize
	for i := 0; i < n; i++ {
		p = append(p, byte(n))
	}
	return p
}

// unpad removes PKCS#7 padding. libfko keeps bytes that do not look like
// padding and lets the field checks fail; Sesame refuses them here, which
// only matters for packets made with the right keys by something other
// than libfko.
func unpad(p []byte) ([]byte, bool) {
	if len(p) == 0 {
		return nil, false
	}
	n := int(p[len(p)-1])
	if n == 0 || n > blockSize || n > len(p) {
		return nil, false
	}
	for _, c := range p[len(p)-n:] {
		if int(c) != n {
			return nil, false
		}
	}
	return p[:len(p)-n], true
}
