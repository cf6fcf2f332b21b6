/*
 * hash_password.h - `sluicectl hash-password`: a password in, its
 * crypt(3) hash out, for the users and users_file of the configuration.
 */
#ifndef SLUICE_HASH_PASSWORD_H
#define SLUICE_HASH_PASSWORD_H

/*
 * argv[0] is "hash-password"; no other argument. From a terminal the
 * password is read twice without echo, otherwise one line from stdin.
 * Prints the yescrypt hash and a newline on stdout. Returns the exit
 * status: 0, 1 (no password, a mismatch, or the hash failed), 2 (usage).
 */
int ctl_hash_password(int argc, char **argv);

#endif
