"""Throwaway certificates for the TLS tests, made with the openssl tool at
test time in a temporary directory (no key is ever committed): CAs, server
certificates for 127.0.0.1 and localhost, client certificates, an expired
one.

Not a test itself; the TLS tests import it.
"""
import os
import subprocess

EXPIRED_START = '20200101000000Z'
EXPIRED_END = '20200102000000Z'


def _run(*args, cwd):
    proc = subprocess.run(args, cwd=cwd, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE)
    if proc.returncode != 0:
        raise RuntimeError('%s: %s' % (' '.join(args),
                                       proc.stderr.decode(errors='replace')))


class Pki:
    def __init__(self, tmp):
        self.dir = os.path.join(tmp, 'pki')
        os.makedirs(self.dir, exist_ok=True)

    def path(self, name):
        return os.path.join(self.dir, name)

    def ca(self, name):
        """A self-signed CA: (cert, key) paths."""
        _run('openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt',
             'ec_paramgen_curve:P-256', '-nodes', '-keyout', name + '.key',
             '-out', name + '.pem', '-subj', '/CN=' + name, '-days', '2',
             '-addext', 'basicConstraints=critical,CA:TRUE', '-addext',
             'keyUsage=critical,keyCertSign,cRLSign', cwd=self.dir)
        return self.path(name + '.pem'), self.path(name + '.key')

    def leaf(self, name, ca, san=None, client=False, expired=False):
        """A certificate signed by CA (a name given to ca()): (cert, key)
        paths. Its subject is CN=name,O=taskwatch-test."""
        _run('openssl', 'req', '-new', '-newkey', 'ec', '-pkeyopt',
             'ec_paramgen_curve:P-256', '-nodes', '-keyout', name + '.key',
             '-out', name + '.csr', '-subj',
             '/O=taskwatch-test/CN=' + name, cwd=self.dir)
        ext = ['extendedKeyUsage=' + ('clientAuth' if client else
                                      'serverAuth')]
        if san:
            ext.append('subjectAltName=' + san)
        with open(self.path(name + '.ext'), 'w') as f:
            f.write('\n'.join(ext) + '\n')
        if not expired:
            _run('openssl', 'x509', '-req', '-in', name + '.csr', '-CA',
                 ca + '.pem', '-CAkey', ca + '.key', '-CAcreateserial',
                 '-out', name + '.pem', '-days', '2', '-extfile',
                 name + '.ext', cwd=self.dir)
        else:
            # Only `openssl ca` sets both dates of a certificate.
            db = self.path(ca + '.index')
            open(db, 'w').close()
            with open(self.path(ca + '.serial'), 'w') as f:
                f.write('1000\n')
            with open(self.path(ca + '.cnf'), 'w') as f:
                f.write('[ca]\ndefault_ca = d\n[d]\ndatabase = %s\n'
                        'new_certs_dir = %s\nserial = %s\n'
                        'default_md = sha256\npolicy = p\n'
                        'unique_subject = no\n[p]\ncommonName = supplied\n'
                        'organizationName = optional\n' %
                        (db, self.dir, self.path(ca + '.serial')))
            _run('openssl', 'ca', '-batch', '-notext', '-config', ca + '.cnf',
                 '-cert', ca + '.pem', '-keyfile', ca + '.key', '-in',
                 name + '.csr', '-out', name + '.pem', '-startdate',
                 EXPIRED_START, '-enddate', EXPIRED_END, '-extfile',
                 name + '.ext', cwd=self.dir)
        return self.path(name + '.pem'), self.path(name + '.key')
