//go:build !linux

package server

import (
	"errors"
	"net"
	"net/netip"
)

// mmsgBatch is Linux only; elsewhere udpReader uses x/net's batches.
type mmsgBatch struct{ blocking bool }

func newMmsgBatch(net.PacketConn, int, int) *mmsgBatch { return nil }

func (*mmsgBatch) read() (int, error)            { return 0, errors.ErrUnsupported }
func (*mmsgBatch) datagram(int) []byte           { return nil }
func (*mmsgBatch) source(int) netip.Addr         { return netip.Addr{} }
func (*mmsgBatch) sourcePort(int) netip.AddrPort { return netip.AddrPort{} }
func (*mmsgBatch) setReply(int, int, []byte)     {}
func (*mmsgBatch) write(int) error               { return errors.ErrUnsupported }

// isBlocking: blocking sockets (blockingConn) are Linux only.
func isBlocking(net.PacketConn) bool { return false }

// UDPReceiveBuffer is the receive buffer ListenUDP asks for on Linux.
const UDPReceiveBuffer = 512 << 10

// ListenUDP opens one UDP socket on addr: SO_REUSEPORT sockets and the
// don't-fragment bit are Linux only here.
func ListenUDP(addr string, n, udpSize int) ([]net.PacketConn, error) {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, err
	}
	return []net.PacketConn{pc}, nil
}
