"""The API's routes, one ``APIRouter`` per concern: ``gallery`` (indexed images and their pictures),
``search`` (query, similar objects, detection in an upload), ``service`` (health, info, the page)."""
