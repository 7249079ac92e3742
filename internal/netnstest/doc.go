// Package netnstest gives real-kernel tests throwaway network namespaces
// (Linux only): they work only inside namespaces they create and delete, so
// the host's rules, routes and links are never touched. Each namespace is
// named Prefix + PID + "-" + random + "-" + role, so that leftovers of a
// crashed run can be told from a live concurrent run's. It is imported by
// tests only.
package netnstest
