mod parsers;
