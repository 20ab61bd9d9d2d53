// Package spa owns fwknop's Single Packet Authorization wire format as
// libfko 2.6.10 writes it: the colon-separated plaintext fields and their
// digest, Rijndael (AES-256) in fwknop's modes with its salted MD5 key
// derivation, the base64 text without OpenSSL's "Salted__" prefix, and the
// HMAC appended to it. It encodes packets (the client's side) and offers
// the server's primitives in fwknopd's order: authenticate the HMAC
// without allocating, then decrypt, check the digest and parse the fields.
//
// It decides nothing about access: package access parses access.conf,
// package verify turns a packet into a grant request or a refusal, and
// package replay remembers the packets already used.
package spa
