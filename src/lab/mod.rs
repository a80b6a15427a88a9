//! `rpiprov lab`: a virtual Pi fleet on one Linux machine (network namespaces, one sshd and
//! one dockerd per node), for the end-to-end tests and for rehearsing a playbook.
