DROP TABLE tickets;
DROP TABLE users;
DROP TABLE accounts;
