//go:build !linux

package announce

import "errors"

func tryMD5() error { return errors.New("TCP MD5 test only on Linux") }
