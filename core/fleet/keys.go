package fleet

import (
	"errors"
	"strings"

	"github.com/sesame-knock/sesame/core/journal"
)

// Key layout, under the group's prefix:
//
//	/sesame/<group>/grants/<grant id>    a live grant (value: JSON, see Parse)
//	/sesame/<group>/revoked/<grant id>   a revoked grant's marker, on the
//	                                     grant's own lease (value: the node that revoked it)
func groupPrefix(group string) string   { return "/sesame/" + group + "/" }
func grantsPrefix(group string) string  { return groupPrefix(group) + "grants/" }
func revokedPrefix(group string) string { return groupPrefix(group) + "revoked/" }

// GrantKey is the etcd key of grant id in group.
func GrantKey(group, id string) string { return grantsPrefix(group) + id }

func revokedKey(group, id string) string { return revokedPrefix(group) + id }

// idFromKey returns the grant id of a key under the grants prefix.
func idFromKey(group, key string) (string, error) {
	id, ok := strings.CutPrefix(key, grantsPrefix(group))
	if !ok || !journal.ValidID(id) {
		return "", &ValueError{Key: key, Err: errors.New("not a grant key (want " + grantsPrefix(group) + "<id>)")}
	}
	return id, nil
}
