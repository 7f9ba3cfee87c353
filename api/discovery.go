package api

import (
	"bytes"
	"encoding/json"
)

// discoveryJSON describes the v1 resources in the Google API discovery
// format that fleet clients generated their code from. rootUrl is the
// literal "$ENDPOINT/": clients substitute the address they dialled.
const discoveryJSON = `{
  "kind": "discovery#restDescription",
  "discoveryVersion": "v1",
  "id": "fleet:v1",
  "name": "fleet",
  "version": "v1",
  "title": "fleet API",
  "description": "Cluster-wide unit scheduling over systemd.",
  "protocol": "rest",
  "rootUrl": "$ENDPOINT/",
  "servicePath": "fleet/v1/",
  "parameters": {
    "alt": {"type": "string", "description": "Data format for the response.", "default": "json", "enum": ["json"], "location": "query"}
  },
  "schemas": {
    "UnitOption": {
      "id": "UnitOption",
      "type": "object",
      "properties": {
        "section": {"type": "string"},
        "name": {"type": "string"},
        "value": {"type": "string"}
      }
    },
    "Unit": {
      "id": "Unit",
      "type": "object",
      "properties": {
        "name": {"type": "string"},
        "options": {"type": "array", "items": {"$ref": "UnitOption"}},
        "desiredState": {"type": "string", "enum": ["inactive", "loaded", "launched"]},
        "currentState": {"type": "string", "enum": ["inactive", "loaded", "launched"], "readOnly": true},
        "machineID": {"type": "string", "readOnly": true},
        "reason": {"type": "string", "readOnly": true}
      }
    },
    "UnitPage": {
      "id": "UnitPage",
      "type": "object",
      "properties": {
        "units": {"type": "array", "items": {"$ref": "Unit"}},
        "nextPageToken": {"type": "string"}
      }
    },
    "UnitState": {
      "id": "UnitState",
      "type": "object",
      "properties": {
        "name": {"type": "string"},
        "hash": {"type": "string"},
        "machineID": {"type": "string"},
        "systemdLoadState": {"type": "string"},
        "systemdActiveState": {"type": "string"},
        "systemdSubState": {"type": "string"}
      }
    },
    "UnitStatePage": {
      "id": "UnitStatePage",
      "type": "object",
      "properties": {
        "states": {"type": "array", "items": {"$ref": "UnitState"}},
        "nextPageToken": {"type": "string"}
      }
    },
    "Machine": {
      "id": "Machine",
      "type": "object",
      "properties": {
        "id": {"type": "string"},
        "primaryIP": {"type": "string"},
        "metadata": {"type": "object", "additionalProperties": {"type": "string"}}
      }
    },
    "MachinePage": {
      "id": "MachinePage",
      "type": "object",
      "properties": {
        "machines": {"type": "array", "items": {"$ref": "Machine"}},
        "nextPageToken": {"type": "string"}
      }
    }
  },
  "resources": {
    "Units": {
      "methods": {
        "List": {
          "id": "fleet.Units.List", "httpMethod": "GET", "path": "units",
          "parameters": {"nextPageToken": {"type": "string", "location": "query"}},
          "response": {"$ref": "UnitPage"}
        },
        "Get": {
          "id": "fleet.Units.Get", "httpMethod": "GET", "path": "units/{unitName}",
          "parameters": {"unitName": {"type": "string", "location": "path", "required": true}},
          "parameterOrder": ["unitName"],
          "response": {"$ref": "Unit"}
        },
        "Set": {
          "id": "fleet.Units.Set", "httpMethod": "PUT", "path": "units/{unitName}",
          "parameters": {"unitName": {"type": "string", "location": "path", "required": true}},
          "parameterOrder": ["unitName"],
          "request": {"$ref": "Unit"}
        },
        "Delete": {
          "id": "fleet.Units.Delete", "httpMethod": "DELETE", "path": "units/{unitName}",
          "parameters": {"unitName": {"type": "string", "location": "path", "required": true}},
          "parameterOrder": ["unitName"]
        }
      }
    },
    "UnitState": {
      "methods": {
        "List": {
          "id": "fleet.UnitState.List", "httpMethod": "GET", "path": "state",
          "parameters": {
            "machineID": {"type": "string", "location": "query"},
            "unitName": {"type": "string", "location": "query"},
            "nextPageToken": {"type": "string", "location": "query"}
          },
          "response": {"$ref": "UnitStatePage"}
        },
        "Get": {
          "id": "fleet.UnitState.Get", "httpMethod": "GET", "path": "state/{unitName}",
          "parameters": {"unitName": {"type": "string", "location": "path", "required": true}},
          "parameterOrder": ["unitName"],
          "response": {"$ref": "UnitState"}
        }
      }
    },
    "Machines": {
      "methods": {
        "List": {
          "id": "fleet.Machines.List", "httpMethod": "GET", "path": "machines",
          "parameters": {"nextPageToken": {"type": "string", "location": "query"}},
          "response": {"$ref": "MachinePage"}
        },
        "Patch": {
          "id": "fleet.Machines.Patch", "httpMethod": "PATCH", "path": "machines",
          "description": "Apply add, replace and remove operations on /<machineID>/metadata/<key> atomically."
        }
      }
    }
  }
}`

// discoveryDocument returns the discovery document in compact form.
func discoveryDocument() []byte {
	var buf bytes.Buffer
	if err := json.Compact(&buf, []byte(discoveryJSON)); err != nil {
		// The document is a constant covered by tests; serve it verbatim
		// rather than fail at startup.
		return []byte(discoveryJSON)
	}
	return buf.Bytes()
}
