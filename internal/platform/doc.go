// Package platform holds how a process is set up: the configuration from
// the environment (config) and the one logger bridged into every library
// (logging). It may import domain/ for the defaults the domain defines, and
// nothing else of the project.
package platform
