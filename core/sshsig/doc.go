// Package sshsig makes and checks OpenSSH's SSHSIG signatures
// (PROTOCOL.sshsig in openssh-portable): what `ssh-keygen -Y sign` writes
// and `ssh-keygen -Y verify` checks. It signs through any ssh.Signer (key
// files, ssh-agent, hardware keys held by an agent) and verifies
// ssh-ed25519, ecdsa-sha2-nistp256/384/521, RSA with rsa-sha2-256/512, and
// the FIDO types sk-ssh-ed25519@openssh.com and
// sk-ecdsa-sha2-nistp256@openssh.com with their flags and counter. It knows
// nothing of knocks, keys files or policy beyond the FIDO flags.
package sshsig
